#!/usr/bin/env bash
# Compile the shared Kotlin (src/main + src/test) with kotlinc and run its JUnit 4 tests on the JVM
# against examples/shared/vectors. Exit status: 0 all passed, 1 a test failed, 2 compilation failed,
# 3 a tool is missing.
#
# Needs: kotlinc (1.3 or newer; Debian/Ubuntu: apt-get install kotlin junit4), a JDK, JUnit 4 + hamcrest.
# Environment (all optional):
#   MC2_VOCAB=DIR      vocab.json + merges.txt (as in a bundle; `mc2export` writes them) -- the tokenizer is
#                      then loaded the way the apps load it; otherwise from mc2export/assets/*.txt.gz
#   MC2_VECTORS=DIR    the vectors (default: examples/shared/vectors)
#   MC2_BENCH_OUT=FILE a benchmark document the tests build is written there (the pytest wrapper validates
#                      it against mc2export/bench/schema.json)
#   MC2_VERIFY=DIR     a small bundle folder with verify/ and fake_model/ (tests/test_kotlin_shared.py writes it):
#                      VerifyTest runs the verify/ reader on it (skipped without)
#   MC2_JVM_BUILD=DIR  where classes go (default: a folder under $TMPDIR keyed by the sources' hash, so an
#                      unchanged tree is compiled once)
#   JUNIT_JAR, HAMCREST_JAR, KOTLIN_STDLIB   jar locations (default: /usr/share/java/...)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"

if ! command -v kotlinc >/dev/null 2>&1; then
  echo "run_jvm_tests.sh: kotlinc not found (apt-get install kotlin junit4, or SDKMAN: sdk install kotlin)" >&2
  exit 3
fi
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
if [ -z "${KOTLIN_STDLIB:-}" ]; then
  KOTLIN_STDLIB=/usr/share/java/kotlin-stdlib.jar
  if [ ! -f "$KOTLIN_STDLIB" ]; then   # the official zip distribution: kotlinc/lib/kotlin-stdlib.jar
    KOTLIN_STDLIB="$(dirname "$(readlink -f "$(command -v kotlinc)")")/../lib/kotlin-stdlib.jar"
  fi
fi
for jar in "$JUNIT_JAR" "$HAMCREST_JAR" "$KOTLIN_STDLIB"; do
  if [ ! -f "$jar" ]; then
    echo "run_jvm_tests.sh: $jar not found (apt-get install junit4, or set JUNIT_JAR / HAMCREST_JAR / KOTLIN_STDLIB)" >&2
    exit 3
  fi
done

mapfile -t SOURCES < <(find "$HERE/src/main/kotlin" "$HERE/src/test/kotlin" -name '*.kt' | LC_ALL=C sort)
HASH="$(cat "${SOURCES[@]}" | sha256sum | cut -c1-16)"
BUILD="${MC2_JVM_BUILD:-${TMPDIR:-/tmp}/mc2export-kotlin-shared-$HASH}"
CLASSES="$BUILD/classes"
if [ -f "$BUILD/.compiled-$HASH" ]; then
  echo "run_jvm_tests.sh: sources unchanged, using $CLASSES"
else
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  echo "run_jvm_tests.sh: compiling ${#SOURCES[@]} Kotlin files with $(kotlinc -version 2>&1 | grep -o 'kotlinc-jvm [^ ]*' || echo kotlinc)"
  start=$(date +%s)
  # The compiler is a short-lived JVM: C1 only and the serial GC make it ~1.5x faster on small machines.
  export JAVA_OPTS="${JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
  if ! kotlinc -nowarn -jvm-target 1.8 -cp "$JUNIT_JAR:$HAMCREST_JAR" -d "$CLASSES" "${SOURCES[@]}" 2>&1 \
      | grep -v -E 'warning: Options -Xverify:none|^OpenJDK 64-Bit Server VM warning'; then
    :
  fi
  if ! compgen -G "$CLASSES/com/mc2export/shared/*Test.class" >/dev/null; then
    echo "run_jvm_tests.sh: compilation failed" >&2
    exit 2
  fi
  touch "$BUILD/.compiled-$HASH"
  echo "run_jvm_tests.sh: compiled in $(( $(date +%s) - start ))s"
fi

VECTORS="${MC2_VECTORS:-$REPO/examples/shared/vectors}"
PROPS=(-Dmc2.vectors="$VECTORS")
if [ -n "${MC2_VOCAB:-}" ]; then PROPS+=(-Dmc2.vocab="$MC2_VOCAB"); fi
if [ -n "${MC2_BENCH_OUT:-}" ]; then PROPS+=(-Dmc2.benchOut="$MC2_BENCH_OUT"); fi
if [ -n "${MC2_VERIFY:-}" ]; then PROPS+=(-Dmc2.verify="$MC2_VERIFY"); fi
cd "$REPO"
exec java "${PROPS[@]}" -cp "$CLASSES:$JUNIT_JAR:$HAMCREST_JAR:$KOTLIN_STDLIB" org.junit.runner.JUnitCore \
  com.mc2export.shared.TokenizerTest com.mc2export.shared.PreprocessTest com.mc2export.shared.AppLogicTest \
  com.mc2export.shared.VerifyTest com.mc2export.shared.IndexTest
