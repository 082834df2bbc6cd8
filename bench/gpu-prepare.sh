#!/usr/bin/env bash
# Prepares .gpu/ for bench/gpu-check.sh, on a machine with Maven, network and JDK 25 (not the GPU
# machine). Run from the repository root of a normal checkout (../shared/gpu/prepare.sh writes
# .git/info/exclude, so not from a `git worktree`):
#
#   bench/gpu-prepare.sh
#
# Builds the native and kernels jars and their test classes, fetches the JUnit console launcher and
# AssertJ, and hands them to ../shared/gpu/prepare.sh, which adds a trimmed JRE and the jars.
# Then, with the device tool: carry [".gpu"], command
#   tar xzf .gpu/jre.tgz -C /tmp && bench/gpu-check.sh [decode-bench options]
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
junit=1.14.1      # platform version of JUnit Jupiter 5.14.1 (root pom junit.version)
assertj=$(sed -n 's:.*<assertj.version>\(.*\)</assertj.version>.*:\1:p' pom.xml)
mvn -B -q -pl native,kernels -am package -DskipTests
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/gpu-check/lib"
cp -r native/target/test-classes "$stage/gpu-check/native-test-classes"
cp -r kernels/target/test-classes "$stage/gpu-check/kernels-test-classes"
mvn -B -q dependency:copy -Dartifact=org.junit.platform:junit-platform-console-standalone:$junit \
  -DoutputDirectory="$stage/gpu-check/lib" -Dmdep.stripVersion=true
mvn -B -q dependency:copy -Dartifact=org.assertj:assertj-core:$assertj \
  -DoutputDirectory="$stage/gpu-check/lib" -Dmdep.stripVersion=true
../shared/gpu/prepare.sh "$stage/gpu-check"
