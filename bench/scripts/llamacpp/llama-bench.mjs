// pp/tg of llama.cpp on a GGUF, measured like `kvserve bench` (and llama-bench): pp = one prefill of
// P random tokens into an empty cache, tg = N single-token decode steps from an empty cache; mean ±
// stddev of tokens/s over R timed repetitions after one untimed one. The engine is llama.cpp itself:
// node-llama-cpp ships llama.cpp's release build with every x86 CPU variant (it loads the one the
// CPU supports: AVX-512 VNNI/BF16 on Zen 4/5), KV cache f16, no flash attention, weights mmapped.
//   node llama-bench.mjs MODEL.gguf THREADS[,THREADS] [P=512] [N=128] [R=2]
import {getLlama} from "node-llama-cpp";

const [, , model, threadList = "1", pArg = "512", nArg = "128", rArg = "2"] = process.argv;
if (!model) {
    console.error("usage: node llama-bench.mjs MODEL.gguf THREADS[,THREADS] [P] [N] [R]");
    process.exit(2);
}
const P = Number(pArg), N = Number(nArg), R = Number(rArg);
const llama = await getLlama({gpu: false, logLevel: "error"});
console.error("llama.cpp " + JSON.stringify(llama.llamaCppRelease) + ": " + llama.systemInfo.trim());
const loaded = await llama.loadModel({modelPath: model, gpuLayers: 0, useMmap: true});
// random ids over the whole vocabulary (the embedding's row count), like kvserve bench
const embd = (loaded.fileInfo.fullTensorInfo ?? []).find(t => t.name === "token_embd.weight");
const vocab = embd ? Number(embd.dimensions[1]) : 1000;

const stats = a => {
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    const sd = Math.sqrt(a.reduce((x, y) => x + (y - mean) ** 2, 0) / a.length);
    return `${mean.toFixed(2)} ± ${sd.toFixed(2)}`;
};

for (const threads of threadList.split(",").map(Number)) {
    const ctx = await loaded.createContext({contextSize: Math.max(P, N + 1) + 16, threads, batchSize: Math.max(P, 1),
        flashAttention: false});
    const seq = ctx.getSequence();
    let seed = 1234;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % vocab;
    const pp = [], tg = [];
    for (let r = 0; r <= R; r++) {
        if (P > 0) {
            await seq.clearHistory();
            const prompt = Array.from({length: P}, rnd);
            const t0 = performance.now();
            await seq.evaluateWithoutGeneratingNewTokens(prompt);
            if (r > 0) pp.push(P / ((performance.now() - t0) / 1000));
        }
        if (N > 0) {
            await seq.clearHistory();
            const t0 = performance.now();
            for (let i = 0; i < N; i++) await seq.evaluateWithoutGeneratingNewTokens([rnd()]);
            if (r > 0) tg.push(N / ((performance.now() - t0) / 1000));
        }
    }
    if (P > 0) console.log(`${model}\tllama.cpp\t${threads}\tpp${P}\t${stats(pp)}`);
    if (N > 0) console.log(`${model}\tllama.cpp\t${threads}\ttg${N}\t${stats(tg)}`);
    await ctx.dispose();
}
await loaded.dispose();
