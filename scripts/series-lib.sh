# shellcheck shell=bash
# series-lib.sh: shared by series-import, series-export and series-rebase.
# Sourced, not run. The callers set `top` (this repository), `me` (their
# name) and `repo` (the scratch repository).
# shellcheck disable=SC2154
#
# The scratch repository these tools keep (default build/series-git) holds
# one branch (default `series`): its root commit is a pristine upstream tree
# ("upstream memcached VERSION", tagged upstream/VERSION), and each following
# commit is one patch of patches/series, in order. A commit's message is the
# patch's header, byte for byte, followed by a blank line and a gbp-pq style
# trailer "Gbp-Pq: Name FILE.patch" that series-export removes again.

say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$@"; exit 1; }

# The header of a patch, exactly as quilt cuts it (patchfns: patch_header):
# everything before the first "--- ", "*** ", "Index: " or "diff -" line.
patch_header() {
    awk '/^(---|\*\*\*|Index:)[ \t][^ \t]|^diff -/ { exit } { print }'
}

# The patch names in a quilt series file, one per line; dies on per-patch
# options such as "-p0", which these tools do not carry.
series_names() {
    awk -v me="$me" -v file="$1" '
        /^[ \t]*(#|$)/ { next }
        NF > 1 { printf "%s: %s: \"%s\": per-patch options are not supported; use -p1 patches\n", me, file, $0 > "/dev/stderr"; bad = 1; next }
        { print $1 }
        END { exit bad }' "$1"
}

# series_git ARGS...: git in the scratch repository.
series_git() { git -C "$repo" "$@"; }

# rebase_in_progress: succeed when a rebase is stopped in the scratch repository.
rebase_in_progress() {
    local gitdir
    gitdir=$(series_git rev-parse --absolute-git-dir)
    [ -d "$gitdir/rebase-merge" ] || [ -d "$gitdir/rebase-apply" ]
}

# unpack_upstream SOURCE DEST: put an upstream tree (a .tar.gz/.tar.xz/.tar
# archive with one top directory, or a directory) at DEST; print its top
# directory's name (memcached-VERSION).
unpack_upstream() {
    local source=$1 dest=$2 tmp tops
    if [ -d "$source" ]; then
        mkdir -p "$dest"
        cp -R "$source/." "$dest/"
        basename "$(cd "$source" && pwd)"
        return
    fi
    [ -f "$source" ] || die "$source: no such archive or directory"
    tmp=$dest.unpack
    mkdir -p "$tmp"
    tar -xf "$source" -C "$tmp" ||
        die "$source: cannot unpack it (expected a tar archive of an upstream tree)"
    tops=$(find "$tmp" -mindepth 1 -maxdepth 1)
    if [ "$(printf '%s\n' "$tops" | wc -l)" != 1 ] || [ ! -d "$tops" ]; then
        die "$source: expected exactly one top directory (memcached-VERSION/) in the archive"
    fi
    mv "$tops" "$dest"
    rmdir "$tmp"
    basename "$tops"
}

# upstream_commit SOURCE [VERSION]: record an upstream tree as a root commit
# "upstream memcached VERSION" tagged upstream/VERSION, and print
# "COMMIT VERSION". VERSION defaults to what follows "memcached-" in the
# tree's top directory. The scratch repository's work tree and index are
# not touched.
upstream_commit() {
    local source=$1 version=${2:-} tmp top tree commit old
    tmp=$(mktemp -d)
    top=$(unpack_upstream "$source" "$tmp/tree")
    if [ -z "$version" ]; then
        case $top in
            memcached-?*) version=${top#memcached-} ;;
            *) rm -rf "$tmp"; die "$source: its top directory '$top' does not say the version (memcached-VERSION); pass --version VERSION" ;;
        esac
    fi
    # -f: upstream's own .gitignore must not hide files it ships.
    GIT_INDEX_FILE=$tmp/index series_git --work-tree="$tmp/tree" add -A -f .
    tree=$(GIT_INDEX_FILE=$tmp/index series_git write-tree)
    rm -rf "$tmp"
    if old=$(series_git rev-parse -q --verify "refs/tags/upstream/$version^{commit}"); then
        [ "$(series_git rev-parse "$old^{tree}")" = "$tree" ] ||
            die "tag upstream/$version already names a different tree in $repo; give this one another name with --version"
        echo "$old $version"
        return
    fi
    commit=$(echo "upstream memcached $version" | series_git commit-tree "$tree")
    series_git tag "upstream/$version" "$commit"
    echo "$commit $version"
}

# patch_name_of COMMIT: the patch name in COMMIT's Gbp-Pq trailer, or nothing.
patch_name_of() {
    series_git cat-file commit "$1" | sed '1,/^$/d' | tail -n 1 | sed -n 's/^Gbp-Pq: Name //p'
}
