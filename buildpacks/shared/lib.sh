# Sourced by the go, rust, cmake and colcon buildpacks (robokud writes this file into each of
# their bin/ dirs): messages, config vars, and the build cache keyed on the app's content.
# POSIX sh plus GNU find/sort/xargs/sha256sum (Debian's coreutils and findutils).

say() { echo "-----> $*"; }
fail() {
  echo " !     $*" >&2
  exit 1
}

# need TOOL PACKAGE [WHY]: fails naming the missing tool and the Debian package that has it.
need() {
  command -v "$1" >/dev/null 2>&1 ||
    fail "$1 is missing${3:+ ($3)}: apt-get install $2"
}

# Config vars for the build (GOFLAGS, CARGO_*, CMAKE_ARGS...), minus what would break it.
export_env_dir() {
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    k=${f##*/}
    case $k in
    *[!A-Za-z0-9_]* | [0-9]* | PATH | HOME | IFS | ENV | PS4 | LD_PRELOAD | LD_LIBRARY_PATH) continue ;;
    esac
    export "$k=$(cat "$f")"
  done
}

# tree_key DIR ENV_DIR EXTRA...: sha256 of everything a build reads: every file of DIR (path,
# mode, content; .git left out), every symlink's target, the config vars and EXTRA (tool
# versions, architecture). Two builds with the same key make the same output.
tree_key() {
  _dir=$1 _env=$2
  shift 2
  (
    cd "$_dir" || exit 1
    find . \( -name .git -prune \) -o -type f -printf '%m %p\n' | LC_ALL=C sort
    find . \( -name .git -prune \) -o -type l -printf '%p -> %l\n' | LC_ALL=C sort
    find . \( -name .git -prune \) -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    for f in "$_env"/*; do
      [ -f "$f" ] && printf '%s=%s\n' "${f##*/}" "$(cat "$f")"
    done
    printf '%s\n' "$@" "$(uname -m)"
  ) | sha256sum | cut -c1-64
}

# cache_restore CACHED DEST...: copies the kept outputs CACHED/<name> back to BUILD_DIR/<name>
# for each DEST name; false when nothing is kept under this key.
cache_restore() {
  _cached=$1
  shift
  [ -f "$_cached/.complete" ] || return 1
  for _name in "$@"; do
    if [ -e "$_cached/$_name" ]; then
      rm -rf "${BUILD_DIR:?}/$_name"
      mkdir -p "$(dirname "$BUILD_DIR/$_name")"
      cp -a "$_cached/$_name" "$BUILD_DIR/$_name"
    fi
  done
}

# cache_save CACHED DEST...: keeps BUILD_DIR/<name> for each DEST under CACHED (only the latest
# key of a pack is kept: the parent dir is emptied first).
cache_save() {
  _cached=$1
  shift
  rm -rf "$(dirname "$_cached")"
  mkdir -p "$_cached.tmp"
  for _name in "$@"; do
    if [ -e "$BUILD_DIR/$_name" ]; then
      mkdir -p "$(dirname "$_cached.tmp/$_name")"
      cp -a "$BUILD_DIR/$_name" "$_cached.tmp/$_name"
    fi
  done
  : >"$_cached.tmp/.complete"
  mv "$_cached.tmp" "$_cached"
}

# The CPU the slug is for: ROBOKU_TARGET_ARCH (set by `roboku slug:build --arch`, an ELF-check
# name such as aarch64), else this machine's. cross_prefix prints the Debian cross toolchain's
# prefix for it (aarch64-linux-gnu); both fail for a CPU no Debian cross toolchain targets.
target_arch() { echo "${ROBOKU_TARGET_ARCH:-$(uname -m)}"; }
is_cross() { [ "$(target_arch)" != "$(uname -m)" ]; }
cross_prefix() {
  case $(target_arch) in
  aarch64) echo aarch64-linux-gnu ;;
  arm) echo arm-linux-gnueabihf ;;
  x86_64) echo x86_64-linux-gnu ;;
  riscv64) echo riscv64-linux-gnu ;;
  *) fail "no cross toolchain known for $(target_arch): build this slug on a $(target_arch) machine" ;;
  esac
}
