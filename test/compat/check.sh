#!/usr/bin/env bash
# Compiles every src/**/*.cpp against the server headers of other PostgreSQL major
# versions (default: 17 and 18), plus the installed server (pg_config) as the reference
# row, with g++ -fsyntax-only and warnings as errors.
#
# Usage: bash test/compat/check.sh [VERSION]...     (no argument: 17 18)
#
# Only PostgreSQL 15 runs on Debian 12; the headers of newer versions come from Debian's
# own archive without installing anything: a private apt state (sources list, lists,
# cache) per suite, one `apt-get update`, `apt-get download`, `dpkg -x`. The archive is
# the Debian main archive this machine's apt already uses, read from its configuration at
# run time. Packages per version: postgresql-server-dev-<v> (the server headers) and
# libpq-dev of the same suite (postgres_ext.h / pg_config_ext.h in usr/include/postgresql;
# the server directory carries its own copies today, the libpq directory goes last on the
# include path as a fallback). ICU and the C/C++ library headers come from this machine.
#
# Flags (mirror the Makefile's PG_CXXFLAGS, plus -Wshadow -Werror, minus -fPIC/-MMD):
#   -std=c++17 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
#   -Wshadow -Werror -isystem <server> -isystem <libpq include> -Isrc -Isrc/<each subfolder>
#
# Knobs (environment):
#   CXX                         compiler (default g++)
#   PG_CONFIG                   reference server (default: pg_config on PATH, else 15's)
#   SEQUIN_COMPAT_CACHE         header cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/sequin_upsert/pg-headers)
#   SEQUIN_COMPAT_REFRESH=1     fetch again even if a version is cached
#   SEQUIN_COMPAT_SUITE_<v>     Debian suite for version <v> (defaults: 16,17 trixie; others sid)
#   SEQUIN_COMPAT_ARCHIVE       archive URI to use instead of the one found in apt's config
#
# Prints one line per (version, file), the compiler output of failures, and ends with
# "N passed, N failed"; exits 1 if anything failed, 2 on a setup error (e.g. the archive
# cannot be reached: CI must not silently skip).
set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
    printf 'compat-check: ERROR: %s\n' "$*" >&2
    exit 2
}
log() { printf 'compat-check: %s\n' "$*" >&2; }

versions=("$@")
((${#versions[@]})) || versions=(17 18)
for v in "${versions[@]}"; do
    [[ $v =~ ^[0-9]+$ ]] || die "not a major version: $v (usage: bash test/compat/check.sh [17 18])"
done

CXX=${CXX:-g++}
command -v "$CXX" >/dev/null || die "no C++ compiler ($CXX)"
for tool in apt-get apt-config dpkg; do
    command -v "$tool" >/dev/null || die "$tool is needed to fetch the headers"
done
[[ -f /usr/include/nlohmann/json.hpp ]] || die "nlohmann/json.hpp missing (apt-get install nlohmann-json3-dev)"

CACHE=${SEQUIN_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sequin_upsert/pg-headers}
mkdir -p "$CACHE"
out=''
# The private apt state is rebuilt by each fetch: only the unpacked headers are kept.
trap 'rm -rf "$CACHE/apt" ${out:+"$out"}' EXIT

suite_for() { # version -> Debian suite
    local var=SEQUIN_COMPAT_SUITE_$1
    if [[ -n ${!var:-} ]]; then
        echo "${!var}"
        return
    fi
    case $1 in
    16 | 17) echo trixie ;;
    *) echo sid ;;
    esac
}

# ---------------------------------------------------------------------------------------
# The machine's Debian main archive, from apt's own configuration: the first `deb` entry
# (one-line *.list or deb822 *.sources) whose suite is exactly this release's codename
# (so not <codename>-security or -updates, nor a third-party repository) and whose
# components include main. Prints "URI<TAB>signed-by" (signed-by may be empty).
# ---------------------------------------------------------------------------------------
find_archive() {
    local codename='' sl sp f
    if [[ -r /etc/os-release ]]; then
        # shellcheck source=/dev/null
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    fi
    [[ -n $codename ]] || die "cannot tell this machine's Debian codename (/etc/os-release); set SEQUIN_COMPAT_ARCHIVE"
    eval "$(apt-config shell sl Dir::Etc::sourcelist/f sp Dir::Etc::sourceparts/d)"
    local files=()
    [[ -n ${sl:-} && -r $sl ]] && files+=("$sl")
    if [[ -n ${sp:-} && -d $sp ]]; then
        for f in "$sp"/*.list "$sp"/*.sources; do
            [[ -r $f ]] && files+=("$f")
        done
    fi
    ((${#files[@]})) || die "no apt sources found (${sl:-?}, ${sp:-?})"
    awk -v want="$codename" '
        function emit(uri, key) { print uri "\t" key; found = 1; exit }
        function check822(   n, i, s, c, u, ok) {
            if (types !~ /(^|[ \t])deb([ \t]|$)/ || enabled ~ /^[Nn]o/) return
            ok = 0
            n = split(comps, c, /[ \t]+/); for (i = 1; i <= n; i++) if (c[i] == "main") ok = 1
            if (!ok) return
            n = split(suites, s, /[ \t]+/)
            for (i = 1; i <= n; i++) if (s[i] == want) { split(uris, u, /[ \t]+/); emit(u[1] == "" ? u[2] : u[1], signedby) }
        }
        function reset822() { types = uris = suites = comps = signedby = enabled = "" }
        FNR == 1 { if (is822) check822(); reset822(); is822 = (FILENAME ~ /\.sources$/) }
        is822 {
            if ($0 ~ /^[ \t]*$/) { check822(); reset822(); next }
            if ($0 ~ /^[ \t]*#/ || $0 ~ /^[ \t]/) next   # comments, continuation lines (inline keys)
            key = tolower($0); sub(/:.*/, "", key)
            val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
            if (key == "types") types = val; else if (key == "uris") uris = val
            else if (key == "suites") suites = val; else if (key == "components") comps = val
            else if (key == "signed-by") signedby = (val ~ /^\//) ? val : ""
            else if (key == "enabled") enabled = val
            next
        }
        {
            line = $0; sub(/#.*/, "", line)
            if (line !~ /^[ \t]*deb[ \t]/) next
            opts = ""
            if (match(line, /\[[^]]*\]/)) { opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH) }
            n = split(line, w, /[ \t]+/)
            j = 0; for (i = 1; i <= n; i++) if (w[i] != "") f[++j] = w[i]
            if (j < 4 || f[3] != want) next
            ok = 0; for (i = 4; i <= j; i++) if (f[i] == "main") ok = 1
            if (!ok) next
            key = ""
            if (match(opts, /signed-by=[^ \t]+/)) key = substr(opts, RSTART + 10, RLENGTH - 10)
            emit(f[2], key)
        }
        END { if (!found && is822) check822() }
    ' "${files[@]}"
}

ARCHIVE_URI='' ARCHIVE_KEY=''
resolve_archive() {
    [[ -n $ARCHIVE_URI ]] && return 0
    if [[ -n ${SEQUIN_COMPAT_ARCHIVE:-} ]]; then
        ARCHIVE_URI=$SEQUIN_COMPAT_ARCHIVE
    else
        local line
        line=$(find_archive | head -n 1)
        [[ -n $line ]] || die "no Debian main archive (suite = this release's codename, component main) in apt's sources; set SEQUIN_COMPAT_ARCHIVE"
        ARCHIVE_URI=${line%%$'\t'*}
        ARCHIVE_KEY=${line#*$'\t'}
    fi
    if [[ -z $ARCHIVE_KEY && -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
        ARCHIVE_KEY=/usr/share/keyrings/debian-archive-keyring.gpg
    fi
    log "Debian archive (from apt's configuration): $ARCHIVE_URI"
}

# Private apt state per suite, updated at most once per run.
declare -A APT_READY=()
apt_opts() { # suite -> options for apt-get, one per line
    local d=$CACHE/apt/$1
    printf '%s\n' \
        -o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-" \
        -o "Dir::Etc::preferences=$d/preferences" -o "Dir::Etc::preferencesparts=$d/preferences.d" \
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" \
        -o "Dir::State::extended_states=$d/extended_states" \
        -o "APT::Sandbox::User=$(id -un)" -o "Acquire::Retries=3" -q
}
apt_update() { # suite
    local suite=$1 d=$CACHE/apt/$1 opts
    [[ -n ${APT_READY[$suite]:-} ]] && return 0
    resolve_archive
    rm -rf "$d"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/preferences.d"
    : >"$d/preferences"
    if [[ -n $ARCHIVE_KEY ]]; then
        echo "deb [signed-by=$ARCHIVE_KEY] $ARCHIVE_URI $suite main" >"$d/sources.list"
    else
        echo "deb $ARCHIVE_URI $suite main" >"$d/sources.list"
    fi
    mapfile -t opts < <(apt_opts "$suite")
    log "apt-get update ($suite, private state in $d)"
    # apt-get update exits 0 on some fetch failures (it only warns): check the lists too.
    if ! apt-get "${opts[@]}" update >"$d/update.log" 2>&1 ||
        grep -qE '^(W|E): (Failed|Some index files failed)' "$d/update.log" ||
        ! compgen -G "$d/lists/*_Packages*" >/dev/null; then
        cat "$d/update.log" >&2
        die "could not fetch the $suite package lists from $ARCHIVE_URI"
    fi
    APT_READY[$suite]=1
}

# Fetches and unpacks the headers of one major version (cached) into $CACHE/<version>.
# (Not run in a subshell, so the archive and each suite's update are looked up once.)
fetch_headers() { # version
    local v=$1 suite dest tmp opts pkgs deb
    suite=$(suite_for "$v")
    dest=$CACHE/$v
    if [[ -f $dest/.complete && ${SEQUIN_COMPAT_REFRESH:-0} != 1 ]]; then
        log "PostgreSQL $v headers: cached in $dest ($(paste -sd' ' "$dest/.packages"))"
        return 0
    fi
    apt_update "$suite"
    mapfile -t opts < <(apt_opts "$suite")
    pkgs=("postgresql-server-dev-$v" libpq-dev)
    tmp=$(mktemp -d "$CACHE/.fetch-$v.XXXXXX")
    log "apt-get download ${pkgs[*]} ($suite)"
    if ! (cd "$tmp" && apt-get "${opts[@]}" download "${pkgs[@]}") >"$tmp/download.log" 2>&1; then
        cat "$tmp/download.log" >&2
        rm -rf "$tmp"
        die "could not download ${pkgs[*]} from $suite (is PostgreSQL $v in $suite?)"
    fi
    mkdir -p "$tmp/root"
    for deb in "$tmp"/*.deb; do
        dpkg -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
        echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$tmp/root/.packages"
    done
    [[ -f $tmp/root/usr/include/postgresql/$v/server/postgres.h ]] ||
        die "postgresql-server-dev-$v has no usr/include/postgresql/$v/server/postgres.h"
    rm -rf "$dest"
    mv "$tmp/root" "$dest"
    rm -rf "$tmp"
    touch "$dest/.complete"
    log "PostgreSQL $v headers: $(paste -sd' ' "$dest/.packages")"
}

# ---------------------------------------------------------------------------------------
# Sources and flags
# ---------------------------------------------------------------------------------------
mapfile -t sources < <(find src -name '*.cpp' -type f | LC_ALL=C sort)
((${#sources[@]})) || die "no src/**/*.cpp found"
src_includes=(-Isrc)
while IFS= read -r d; do src_includes+=("-I$d"); done < <(find src -mindepth 1 -type d | LC_ALL=C sort)
CXXFLAGS_CHECK=(-std=c++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter
    -Wno-missing-field-initializers -Wshadow -Werror)

# Rows: label and include flags.
row_labels=()
row_flags=()

ref_config=${PG_CONFIG:-}
if [[ -z $ref_config ]]; then
    if command -v pg_config >/dev/null; then
        ref_config=pg_config
    else
        ref_config=/usr/lib/postgresql/15/bin/pg_config
    fi
fi
if ref_server=$("$ref_config" --includedir-server 2>/dev/null); then
    ref_version=$("$ref_config" --version | sed -E 's/^PostgreSQL ([0-9]+(\.[0-9]+)?).*/\1/')
    row_labels+=("pg$ref_version (installed)")
    row_flags+=("-isystem $ref_server -isystem $("$ref_config" --includedir)")
else
    die "no reference server headers: $ref_config --includedir-server failed (set PG_CONFIG)"
fi

for v in "${versions[@]}"; do
    fetch_headers "$v"
    root=$CACHE/$v
    full=$(sed -n "s/^postgresql-server-dev-$v //p" "$root/.packages")
    row_labels+=("pg${full:-$v} ($(suite_for "$v"))")
    row_flags+=("-isystem $root/usr/include/postgresql/$v/server -isystem $root/usr/include/postgresql")
done

# ---------------------------------------------------------------------------------------
# Compile (in parallel, reported in order)
# ---------------------------------------------------------------------------------------
out=$(mktemp -d)
jobs_max=$(nproc 2>/dev/null || echo 2)
n=0
for r in "${!row_labels[@]}"; do
    read -ra inc <<<"${row_flags[$r]}"
    for f in "${sources[@]}"; do
        n=$((n + 1))
        (
            if "$CXX" "${CXXFLAGS_CHECK[@]}" "${inc[@]}" "${src_includes[@]}" "$f" >"$out/$r.$n.log" 2>&1; then
                echo ok >"$out/$r.$n.rc"
            else
                echo FAIL >"$out/$r.$n.rc"
            fi
        ) &
        while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
    done
done
wait

passed=0 failed=0 n=0
for r in "${!row_labels[@]}"; do
    for f in "${sources[@]}"; do
        n=$((n + 1))
        status=$(cat "$out/$r.$n.rc" 2>/dev/null || echo FAIL)
        printf '%-4s %-28s %s\n' "$status" "${row_labels[$r]}" "$f"
        if [[ $status == ok ]]; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            grep -E 'error|note: ' "$out/$r.$n.log" | head -n 20 | sed 's/^/     | /'
        fi
    done
done
echo "$passed passed, $failed failed"
((failed == 0)) || exit 1
