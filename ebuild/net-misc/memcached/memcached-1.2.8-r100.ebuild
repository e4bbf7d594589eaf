# Copyright 2025 repcached-ng authors
# Distributed under the terms of the GNU General Public License v2

EAPI=8

inherit autotools systemd

# The repcached-ng patch series this revision applies: the project's VERSION,
# and the tarball its `make dist` writes. A new series is a new revision
# (-r101, ...), so that an installed package always names its series.
SERIES_PV="0.1.0"
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

RDEPEND="
	acct-group/memcached
	acct-user/memcached
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

	# Apply the series in the order of its series file, as `quilt push -a`
	# does; each patch is -p1 (quilt's a/ b/ prefixes).
	[[ -f ${series}/series ]] || die "${SERIES_P}.tar.gz has no patches/series"
	while read -r patch _; do
		[[ -z ${patch} || ${patch} == \#* ]] && continue
		eapply "${series}/${patch}"
	done < "${series}/series"
	eapply_user

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
	einstalldocs

	newinitd "${FILESDIR}/memcached.initd" memcached
	newconfd "${FILESDIR}/memcached.confd" memcached
	systemd_dounit "${FILESDIR}/memcached.service"
}

pkg_postinst() {
	elog "Settings are in /etc/conf.d/memcached (OpenRC) and are read by"
	elog "memcached.service too (systemd). For several instances on OpenRC,"
	elog "  ln -s memcached /etc/init.d/memcached.NAME"
	elog "and put their settings in /etc/conf.d/memcached.NAME."
	if use replication; then
		elog
		elog "Replication starts when REPLICATION_PEERS names at least one peer."
		elog "Peers connect to each other on REPLICATION_PORT (default 11212):"
		elog "open it between the nodes only. The cluster name (REPLICATION_CLUSTER)"
		elog "keeps nodes of another cluster out; it is not a password."
	fi
}
