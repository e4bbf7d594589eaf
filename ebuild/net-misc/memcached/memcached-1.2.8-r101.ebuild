# Copyright 2025 repcached-ng authors
# Distributed under the terms of the GNU General Public License v2

EAPI=8

inherit autotools systemd

# The repcached-ng patch series this revision applies: the project's VERSION,
# and the tarball its `make dist` writes. A new series is a new revision
# (-r101, ...), so that an installed package always names its series.
SERIES_PV="0.2.0"
SERIES_P="${P}-repcached-ng-${SERIES_PV}-patches"

DESCRIPTION="memcached 1.2.8 with repcached-ng replication between nodes"
HOMEPAGE="
	https://github.com/repcached-ng/repcached-ng
	https://memcached.org/
"
# memcached.org keeps every old release under files/old/; the Gentoo mirrors
# have the same tarball (Portage tries them first).
SRC_URI="
	https://memcached.org/files/old/${P}.tar.gz
	https://github.com/repcached-ng/repcached-ng/releases/download/v${SERIES_PV}/${SERIES_P}.tar.gz
"

LICENSE="BSD"
SLOT="0"
KEYWORDS="~amd64 ~x86"
IUSE="debug +replication test threads"
RESTRICT="!test? ( test )"

# memcached-tool is a Perl script (core modules only). Replication's
# shared secret (-K) is an HMAC from libcrypto, linked by the server.
RDEPEND="
	acct-group/memcached
	acct-user/memcached
	dev-lang/perl
	>=dev-libs/libevent-1.4:=
	replication? ( dev-libs/openssl:0= )
"
DEPEND="${RDEPEND}"
# t/ of memcached 1.2.8 needs only Perl and its core modules.
BDEPEND="test? ( dev-lang/perl )"

DOCS=(
	AUTHORS ChangeLog NEWS README TODO
	doc/memory_management.txt doc/protocol.txt doc/threads.txt
)

src_prepare() {
	local series="${WORKDIR}/${SERIES_P}/patches" patch
	local PATCHES=()

	# The series in the order of its series file, as `quilt push -a`
	# applies it; each patch is -p1 (quilt's a/ b/ prefixes). default
	# applies PATCHES, then the user's patches.
	[[ -f ${series}/series ]] || die "${SERIES_P}.tar.gz has no patches/series"
	while read -r patch _; do
		[[ -z ${patch} || ${patch} == \#* ]] && continue
		PATCHES+=( "${series}/${patch}" )
	done < "${series}/series" || die
	default

	# AM_CONFIG_HEADER is gone from recent automake; same fix as ::gentoo.
	sed -i -e 's/AM_CONFIG_HEADER/AC_CONFIG_HEADERS/' configure.ac || die

	# The series changes configure.ac.
	eautoreconf
}

src_configure() {
	local myeconfargs=(
		"$(use_enable replication)"
		"$(use_enable threads)"
	)

	econf "${myeconfargs[@]}"
}

src_test() {
	# Upstream's t/ runs memcached-debug on fixed loopback ports: one at a time.
	emake -j1 test
}

src_install() {
	# Not `emake install`: it would install memcached-debug unconditionally.
	dobin memcached
	use debug && dobin memcached-debug
	doman doc/memcached.1
	# Upstream's stats tool, installed as ::gentoo installs it.
	dobin scripts/memcached-tool
	einstalldocs

	# The command line, from the settings, of both the init script and
	# the units.
	exeinto /usr/libexec/memcached
	doexe "${FILESDIR}/memcached-cmdline"
	newinitd "${FILESDIR}/memcached.initd" memcached
	newconfd "${FILESDIR}/memcached.confd" memcached
	# The units are Type=notify: the server tells systemd when it serves.
	# Only replication's code does (a node with peers serves once it holds
	# their data); a server built without it never says so, and its units
	# wait for the process to run instead.
	local unit
	for unit in memcached.service memcached@.service; do
		if use replication; then
			systemd_dounit "${FILESDIR}/${unit}"
		else
			sed -e 's/^Type=notify$/Type=exec/' -e '/^NotifyAccess=main$/d' \
				"${FILESDIR}/${unit}" > "${T}/${unit}" || die
			systemd_dounit "${T}/${unit}"
		fi
	done
}

# memcached_check_confd FILE: warn about what a conf.d written for a newer
# memcached (::gentoo's 1.6) sets that 1.2.8 and this init script lack.
memcached_check_confd() {
	local file=$1 name opt letter
	# The settings of this conf.d, and the options of memcached 1.2.8 (-h),
	# replication's included.
	local settings=(
		PORT UDPPORT LISTENON MEMUSAGE MAXCONN THREADS REPLICATION_PEERS
		REPLICATION_PORT REPLICATION_QUEUE_MB REPLICATION_CLUSTER
		REPLICATION_SECRET_FILE MEMCACHED_RUNAS MEMCACHED_BINARY START_TIMEOUT
		MISC_OPTS
	)
	local options=( a b c d f h i k l L m M n p P r R s t u U v x X Q Z K w )

	while read -r name; do
		has "${name}" "${settings[@]}" ||
			ewarn "${file}: ${name} is not a setting of this package; it is ignored."
	done < <(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "${file}")

	# shellcheck disable=SC1090 # the operator's file, read as OpenRC reads it.
	for opt in $(MISC_OPTS=; source "${file}" >/dev/null 2>&1; echo "${MISC_OPTS}"); do
		letter=${opt#-}
		letter=${letter:0:1}
		if [[ ${opt} == --* ]] || { [[ ${opt} == -* ]] && ! has "${letter}" "${options[@]}"; }; then
			ewarn "${file}: MISC_OPTS has ${opt}, which memcached 1.2.8 does not know:"
			ewarn "  it will refuse to start. Remove it (see memcached -h)."
		fi
	done
}

pkg_postinst() {
	local version first=yes upgrade="" newer="" file

	for version in ${REPLACING_VERSIONS}; do
		first=
		[[ ${version} != "${PVR}" ]] && upgrade=yes
		[[ ${version} != 1.2.8* ]] && newer=yes
	done
	# A rebuild of this same version has nothing new to say.
	[[ -n ${first} || -n ${upgrade} ]] || return 0

	elog "Settings are in /etc/conf.d/memcached (OpenRC) and are read by"
	elog "memcached.service too (systemd). For several instances on OpenRC,"
	elog "  ln -s memcached /etc/init.d/memcached.NAME"
	elog "and put their settings in /etc/conf.d/memcached.NAME; on systemd,"
	elog "  systemctl enable --now memcached@NAME"
	elog "reads /etc/conf.d/memcached, then /etc/conf.d/memcached.NAME."
	if use replication; then
		elog
		elog "Replication starts when REPLICATION_PEERS names at least one peer."
		elog "Peers connect to each other on REPLICATION_PORT (default 11212):"
		elog "open it between the nodes only. The cluster name (REPLICATION_CLUSTER)"
		elog "keeps nodes of another cluster out; it is not a password: the shared"
		elog "secret is (REPLICATION_SECRET_FILE, the same file on every node, mode"
		elog "0600, owned by memcached). Links are not encrypted: see the project's"
		elog "docs/security.md to carry them through stunnel or WireGuard."
	fi

	if [[ -n ${newer} ]]; then
		ewarn "This replaces memcached ${REPLACING_VERSIONS}: 1.2.8 knows fewer options."
		for file in "${EROOT}"/etc/conf.d/memcached "${EROOT}"/etc/conf.d/memcached.*; do
			[[ -f ${file} && ${file} != */._cfg* ]] && memcached_check_confd "${file}"
		done
	fi
}
