# Shared settings of the kvbench-31m scripts (sourced). Run from the repository root after
# `mvn -B -q -DskipTests package`; SHARED points at ../shared, OUT at where results go.
SHARED=${SHARED:-../shared}
OUT=${OUT:-/tmp/kvb}
M=bench/models/kvbench-31m-q8_0.gguf
CAL=$OUT/cal
J="${JAVA:-java} -XX:ParallelGCThreads=1 -XX:+UseParallelGC --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -jar dist/target/kvserve.jar"
mkdir -p $OUT $CAL
# the held-out validation text of the model's training pack (never trained on)
[ -f $OUT/valid.txt ] || xz -dc $SHARED/train/pack/valid.txt.xz > $OUT/valid.txt
