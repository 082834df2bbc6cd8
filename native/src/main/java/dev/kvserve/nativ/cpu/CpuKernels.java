package dev.kvserve.nativ.cpu;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * The int8 dot-product matmuls of {@code libkvserve_cpu.so} (source: {@code src/main/c/cpu_kernels.c}),
 * which the CPU backend uses for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K weights where they load. The Vector API has no
 * integer dot product, so a Java kernel widens each weight to a float; these kernels quantize the
 * activations to int8 blocks once per matmul, as llama.cpp does, and use {@code vpdpbusd}
 * (AVX-512 VNNI) or {@code vpmaddubsw} (AVX2).
 *
 * <p>{@link #probe()} loads the library once and never throws: not x86-64 Linux, a CPU without
 * AVX2, native access denied, or {@code -Dkvserve.cpu.native=false} all become a one-line reason,
 * and the backend keeps its Vector API kernels.
 *
 * <p>Every call checks that the segments hold what the kernel will read and write, so a wrong size
 * is an exception, never a crash. Calls are "critical" downcalls: they may take heap segments, and
 * hold up a garbage collection only for one chunk of rows.
 */
public final class CpuKernels {

    private static final String RESOURCE = "/dev/kvserve/nativ/cpu/linux-x86_64/libkvserve_cpu.so";

    /** Instruction sets the library can use, by its {@code kvs_cpu_isa()} code. */
    public static final int ISA_AVX2 = 1;
    public static final int ISA_AVX512_VNNI = 2;

    /**
     * Weight types the kernels take, by ggml type id (as {@code GgmlType.id}): Q8_0 and Q4_0 (the
     * first ones, {@code boolean q4_0} in the older signatures), and the block-32 types of the K
     * presets' fallbacks, Q4_1, Q5_0 and Q5_1 (see cpu_kernels.c for how each meets the activations).
     */
    public static final int Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8;

    /**
     * Q4_K and Q6_K, by ggml type id: blocks of 256 against activations quantized as ggml's q8_K ({@link
     * #quantize(int, MemorySegment, long, int, int, MemorySegment, MemorySegment, MemorySegment)}
     * chooses the format by weight type); plain layout only (no {@link #repackX8}), AVX2 code on
     * every machine (VNNI ones included).
     */
    public static final int Q4_K = 12, Q6_K = 14;

    /** @param kernels the loaded kernels, or null; @param description what they run on, or why they do not load */
    public record Probe(CpuKernels kernels, String description) {
        public boolean available() {
            return kernels != null;
        }
    }

    private static final class Holder {
        static final Probe PROBE = load();
    }

    /** The library, loaded on first use and cached. Never throws. */
    public static Probe probe() {
        return Holder.PROBE;
    }

    private final MethodHandle isa;
    private final MethodHandle limitIsa;
    private final MethodHandle quantize;
    private final MethodHandle matmulQ4_0;
    private final MethodHandle matmulQ8_0;
    private final MethodHandle repackQ4_0x8;
    private final MethodHandle matmulQ4_0x8;
    private final MethodHandle repackQ8_0x8;
    private final MethodHandle matmulQ8_0x8;
    private final MethodHandle matmulB32;
    private final MethodHandle repackB32x8;
    private final MethodHandle matmulB32x8;
    private final MethodHandle quantizeK;
    private final MethodHandle matmulK;

    private CpuKernels(SymbolLookup lib) {
        Linker linker = Linker.nativeLinker();
        Linker.Option critical = Linker.Option.critical(true);
        ValueLayout.OfInt i32 = ValueLayout.JAVA_INT;
        ValueLayout.OfLong i64 = ValueLayout.JAVA_LONG;
        ValueLayout ptr = ValueLayout.ADDRESS;
        isa = linker.downcallHandle(find(lib, "kvs_cpu_isa"), FunctionDescriptor.of(i32));
        limitIsa = linker.downcallHandle(find(lib, "kvs_cpu_limit_isa"), FunctionDescriptor.of(i32, i32));
        quantize = linker.downcallHandle(find(lib, "kvs_quantize_q8"),
                FunctionDescriptor.ofVoid(ptr, i64, i32, i32, ptr, ptr, ptr), critical);
        FunctionDescriptor matmul = FunctionDescriptor.ofVoid(ptr, i64, i32, ptr, ptr, ptr, i32, i32, ptr, i64);
        matmulQ4_0 = linker.downcallHandle(find(lib, "kvs_matmul_q4_0"), matmul, critical);
        matmulQ8_0 = linker.downcallHandle(find(lib, "kvs_matmul_q8_0"), matmul, critical);
        FunctionDescriptor repack = FunctionDescriptor.ofVoid(ptr, i64, i32, i32, ptr);
        FunctionDescriptor matmulX8 = FunctionDescriptor.ofVoid(ptr, i32, ptr, ptr, ptr, i32, i32, ptr, i64);
        repackQ4_0x8 = linker.downcallHandle(find(lib, "kvs_repack_q4_0x8"), repack, critical);
        matmulQ4_0x8 = linker.downcallHandle(find(lib, "kvs_matmul_q4_0x8"), matmulX8, critical);
        repackQ8_0x8 = linker.downcallHandle(find(lib, "kvs_repack_q8_0x8"), repack, critical);
        matmulQ8_0x8 = linker.downcallHandle(find(lib, "kvs_matmul_q8_0x8"), matmulX8, critical);
        matmulB32 = linker.downcallHandle(find(lib, "kvs_matmul_b32"),
                FunctionDescriptor.ofVoid(i32, ptr, i64, i32, ptr, ptr, ptr, i32, i32, ptr, i64), critical);
        repackB32x8 = linker.downcallHandle(find(lib, "kvs_repack_b32x8"),
                FunctionDescriptor.ofVoid(i32, ptr, i64, i32, i32, ptr), critical);
        matmulB32x8 = linker.downcallHandle(find(lib, "kvs_matmul_b32x8"),
                FunctionDescriptor.ofVoid(i32, ptr, i32, ptr, ptr, ptr, i32, i32, ptr, i64), critical);
        quantizeK = linker.downcallHandle(find(lib, "kvs_quantize_q8_k"),
                FunctionDescriptor.ofVoid(ptr, i64, i32, i32, ptr, ptr, ptr), critical);
        matmulK = linker.downcallHandle(find(lib, "kvs_matmul_k"),
                FunctionDescriptor.ofVoid(i32, ptr, i64, i32, ptr, ptr, ptr, i32, i32, ptr, i64), critical);
    }

    private static MemorySegment find(SymbolLookup lib, String name) {
        return lib.find(name).orElseThrow(() -> new IllegalStateException("libkvserve_cpu.so lacks " + name));
    }

    private static Probe load() {
        if (!Boolean.parseBoolean(System.getProperty("kvserve.cpu.native", "true"))) {
            return new Probe(null, "disabled by -Dkvserve.cpu.native=false");
        }
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.startsWith("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return new Probe(null, "built for x86-64 Linux only (this is " + os + " " + arch + ")");
        }
        try (InputStream in = CpuKernels.class.getResourceAsStream(RESOURCE)) {
            if (in == null) return new Probe(null, RESOURCE + " is missing from the class path");
            Path file = Files.createTempFile("libkvserve_cpu", ".so");
            file.toFile().deleteOnExit();
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
            CpuKernels kernels = new CpuKernels(SymbolLookup.libraryLookup(file, Arena.global()));
            int code = kernels.isa();
            if (code < ISA_AVX2) return new Probe(null, "the CPU lacks AVX2, FMA or F16C");
            return new Probe(kernels, isaName(code));
        } catch (IOException e) {
            return new Probe(null, "cannot extract libkvserve_cpu.so: " + e.getMessage());
        } catch (RuntimeException | LinkageError e) {
            return new Probe(null, "cannot load libkvserve_cpu.so: " + e);
        }
    }

    public static String isaName(int code) {
        return switch (code) {
            case ISA_AVX512_VNNI -> "AVX-512 VNNI";
            case ISA_AVX2 -> "AVX2";
            default -> "none";
        };
    }

    /** The instruction set in use: {@link #ISA_AVX2} or {@link #ISA_AVX512_VNNI}. */
    public int isa() {
        try {
            return (int) isa.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Caps the instruction set (process-wide) so that tests reach every path this CPU has; returns
     * the one now in use. Not for use while another thread runs a kernel.
     */
    public int limitIsa(int max) {
        try {
            return (int) limitIsa.invokeExact(max);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Bytes of int8 values ({@code xq}), of scales ({@code xd}) and of run sums ({@code xs}) for {@code rows × cols} activations. */
    public static long quantsBytes(int rows, int cols) {
        return (long) rows * cols;
    }

    public static long scalesBytes(int rows, int cols) {
        return (long) rows * (cols / 32) * Float.BYTES;
    }

    public static long sumsBytes(int rows, int cols) {
        return (long) rows * (cols / 4 + cols / 32) * Integer.BYTES;
    }

    /** Whether weights of {@code type} meet q8_K activations (blocks of 256, float scale, sums per 16) rather than q8_0-style ones. */
    public static boolean superBlocks(int type) {
        return type == Q4_K || type == Q6_K;
    }

    /** As {@link #scalesBytes(int, int)} for the activations weights of {@code type} take: one float per 256 values for {@link #superBlocks}. */
    public static long scalesBytes(int type, int rows, int cols) {
        return superBlocks(type) ? (long) rows * (cols / 256) * Float.BYTES : scalesBytes(rows, cols);
    }

    /** As {@link #sumsBytes(int, int)} for the activations weights of {@code type} take: one int32 per 16 values for {@link #superBlocks}. */
    public static long sumsBytes(int type, int rows, int cols) {
        return superBlocks(type) ? (long) rows * (cols / 16) * Integer.BYTES : sumsBytes(rows, cols);
    }

    /** Whether {@link #repackX8} takes weights of {@code type}. */
    public static boolean repacks(int type) {
        return type == Q4_0 || type == Q4_1 || type == Q5_0 || type == Q5_1 || type == Q8_0;
    }

    /** Bytes of {@code groups} groups of eight Q4_0 (or Q8_0) rows of {@code cols} values, repacked (as many as ggml's layout). */
    public static long packedBytes(boolean q4_0, int groups, int cols) {
        return packedBytes(q4_0 ? Q4_0 : Q8_0, groups, cols);
    }

    /** Bytes of {@code groups} groups of eight rows of weight type {@code type}, repacked (as many as ggml's layout). */
    public static long packedBytes(int type, int groups, int cols) {
        return (long) groups * (cols / 32) * 8 * blockBytes(type);
    }

    /** Whether these kernels take weights of ggml type {@code type}. */
    public static boolean supports(int type) {
        return repacks(type) || superBlocks(type);
    }

    /** Bytes of one block of 32 weights of {@code type}; an exception for a type these kernels do not take. */
    public static int blockBytes(int type) {
        return switch (type) {
            case Q4_0 -> 18;
            case Q4_1 -> 20;
            case Q5_0 -> 22;
            case Q5_1 -> 24;
            case Q8_0 -> 34;
            default -> throw new IllegalArgumentException("no int8 kernel for ggml type " + type);
        };
    }

    /**
     * Quantizes {@code rows} rows of {@code cols} floats (row i at float index {@code i * xStride}
     * of {@code x}) to int8 blocks of 32 with one fp16-rounded scale each, as ggml's AVX
     * {@code quantize_row_q8_0} does (scale max|x|/127, round to nearest even), plus −8 × the sum of
     * every run of four quants and of every block (what Q4_0's offset needs).
     */
    public void quantize(MemorySegment x, long xStride, int rows, int cols, MemorySegment xq, MemorySegment xd, MemorySegment xs) {
        if (cols <= 0 || cols % 32 != 0 || rows < 0 || xStride < cols) {
            throw new IllegalArgumentException("quantize: cols " + cols + " (a positive multiple of 32), rows " + rows + ", stride " + xStride);
        }
        if (rows == 0) return;
        need(x, ((rows - 1) * xStride + cols) * Float.BYTES, "activations");
        need(xq, quantsBytes(rows, cols), "quants");
        need(xd, scalesBytes(rows, cols), "scales");
        need(xs, sumsBytes(rows, cols), "run sums");
        try {
            quantize.invokeExact(x, xStride, rows, cols, xq, xd, xs);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Quantizes activations in the format weights of {@code type} take: {@link #quantize} for the
     * block-32 types; for {@link #superBlocks} types as ggml's {@code quantize_row_q8_K_ref} (per 256
     * values: iscale = −127 / the first value of largest magnitude, q = min(127, round-half-even(iscale·x)),
     * float scale 1/iscale), with the sum of every run of sixteen quants in {@code xs}.
     */
    public void quantize(int type, MemorySegment x, long xStride, int rows, int cols, MemorySegment xq, MemorySegment xd,
                         MemorySegment xs) {
        if (!superBlocks(type)) {
            quantize(x, xStride, rows, cols, xq, xd, xs);
            return;
        }
        if (cols <= 0 || cols % 256 != 0 || rows < 0 || xStride < cols) {
            throw new IllegalArgumentException("quantize q8_K: cols " + cols + " (a positive multiple of 256), rows " + rows
                    + ", stride " + xStride);
        }
        if (rows == 0) return;
        need(x, ((rows - 1) * xStride + cols) * Float.BYTES, "activations");
        need(xq, quantsBytes(rows, cols), "quants");
        need(xd, scalesBytes(type, rows, cols), "scales");
        need(xs, sumsBytes(type, rows, cols), "run sums");
        try {
            quantizeK.invokeExact(x, xStride, rows, cols, xq, xd, xs);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code out[b·outStride + r] = Σ_c w[r][c] · x_b[c]} for {@code r < rows}, {@code b < batch}:
     * weight row r of type {@code q4_0} (true) or Q8_0 (false) at byte {@code r·rowBytes} of {@code w}, activation
     * row b as quantized by {@link #quantize} at row b of {@code xq}, {@code xd}, {@code xs}.
     */
    public void matmul(boolean q4_0, MemorySegment w, long rowBytes, int rows, MemorySegment xq, MemorySegment xd,
                       MemorySegment xs, int cols, int batch, MemorySegment out, long outStride) {
        matmul(q4_0 ? Q4_0 : Q8_0, w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
    }

    /** As {@link #matmul(boolean, MemorySegment, long, int, MemorySegment, MemorySegment, MemorySegment, int, int, MemorySegment, long)} for weights of ggml type {@code type} ({@link #supports}). */
    public void matmul(int type, MemorySegment w, long rowBytes, int rows, MemorySegment xq, MemorySegment xd,
                       MemorySegment xs, int cols, int batch, MemorySegment out, long outStride) {
        if (superBlocks(type)) {
            matmulK(type, w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
            return;
        }
        long blockBytes = blockBytes(type);
        if (cols <= 0 || cols % 32 != 0 || rows < 0 || batch < 0 || rowBytes < cols / 32 * blockBytes || outStride < rows) {
            throw new IllegalArgumentException("matmul: cols " + cols + ", rows " + rows + ", batch " + batch
                    + ", row bytes " + rowBytes + ", out stride " + outStride);
        }
        if (rows == 0 || batch == 0) return;
        need(w, (rows - 1) * rowBytes + cols / 32 * blockBytes, "weights");
        need(xq, quantsBytes(batch, cols), "quants");
        need(xd, scalesBytes(batch, cols), "scales");
        if (type != Q8_0) need(xs, sumsBytes(batch, cols), "run sums");
        need(out, ((batch - 1) * outStride + rows) * Float.BYTES, "output");
        try {
            switch (type) {
                case Q4_0 -> matmulQ4_0.invokeExact(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
                case Q8_0 -> matmulQ8_0.invokeExact(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
                default -> matmulB32.invokeExact(type, w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Repacks rows {@code 0 .. 8·groups} of a Q4_0 (or Q8_0) matrix, rows {@code rowBytes} apart in
     * {@code src}, into {@code dst} ({@link #packedBytes} long): eight rows' blocks side by side, so
     * that {@link #matmulX8} computes eight rows per vector (the layouts are described in
     * cpu_kernels.c). What llama.cpp's CPU backend does to such weights at load ("REPACK").
     */
    public void repackX8(boolean q4_0, MemorySegment src, long rowBytes, int groups, int cols, MemorySegment dst) {
        repackX8(q4_0 ? Q4_0 : Q8_0, src, rowBytes, groups, cols, dst);
    }

    /** As {@link #repackX8(boolean, MemorySegment, long, int, int, MemorySegment)} for weights of ggml type {@code type}. */
    public void repackX8(int type, MemorySegment src, long rowBytes, int groups, int cols, MemorySegment dst) {
        long block = blockBytes(type);
        if (cols <= 0 || cols % 32 != 0 || groups < 0 || rowBytes < cols / 32 * block) {
            throw new IllegalArgumentException("repack: cols " + cols + ", groups " + groups + ", row bytes " + rowBytes);
        }
        if (groups == 0) return;
        need(src, (8L * groups - 1) * rowBytes + cols / 32 * block, "weights");
        need(dst, packedBytes(type, groups, cols), "repacked weights");
        try {
            switch (type) {
                case Q4_0 -> repackQ4_0x8.invokeExact(src, rowBytes, groups, cols, dst);
                case Q8_0 -> repackQ8_0x8.invokeExact(src, rowBytes, groups, cols, dst);
                default -> repackB32x8.invokeExact(type, src, rowBytes, groups, cols, dst);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@link #matmul} over {@code 8·groups} rows repacked by {@link #repackX8}: output row r of
     * activation row b at float {@code b·outStride + r}.
     */
    public void matmulX8(boolean q4_0, MemorySegment packed, int groups, MemorySegment xq, MemorySegment xd,
                         MemorySegment xs, int cols, int batch, MemorySegment out, long outStride) {
        matmulX8(q4_0 ? Q4_0 : Q8_0, packed, groups, xq, xd, xs, cols, batch, out, outStride);
    }

    /** As {@link #matmulX8(boolean, MemorySegment, int, MemorySegment, MemorySegment, MemorySegment, int, int, MemorySegment, long)} for weights of ggml type {@code type}. */
    public void matmulX8(int type, MemorySegment packed, int groups, MemorySegment xq, MemorySegment xd,
                         MemorySegment xs, int cols, int batch, MemorySegment out, long outStride) {
        blockBytes(type);
        if (cols <= 0 || cols % 32 != 0 || groups < 0 || batch < 0 || outStride < 8L * groups) {
            throw new IllegalArgumentException("matmul x8: cols " + cols + ", groups " + groups + ", batch " + batch
                    + ", out stride " + outStride);
        }
        if (groups == 0 || batch == 0) return;
        need(packed, packedBytes(type, groups, cols), "repacked weights");
        need(xq, quantsBytes(batch, cols), "quants");
        need(xd, scalesBytes(batch, cols), "scales");
        need(xs, sumsBytes(batch, cols), "run sums");
        need(out, ((batch - 1) * outStride + 8L * groups) * Float.BYTES, "output");
        try {
            switch (type) {
                case Q4_0 -> matmulQ4_0x8.invokeExact(packed, groups, xq, xd, xs, cols, batch, out, outStride);
                case Q8_0 -> matmulQ8_0x8.invokeExact(packed, groups, xq, xd, xs, cols, batch, out, outStride);
                default -> matmulB32x8.invokeExact(type, packed, groups, xq, xd, xs, cols, batch, out, outStride);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private void matmulK(int type, MemorySegment w, long rowBytes, int rows, MemorySegment xq, MemorySegment xd,
                         MemorySegment xs, int cols, int batch, MemorySegment out, long outStride) {
        long blockBytes = type == Q4_K ? 144 : 210;   // Q4_K, Q6_K
        if (cols <= 0 || cols % 256 != 0 || rows < 0 || batch < 0 || rowBytes < cols / 256 * blockBytes || outStride < rows) {
            throw new IllegalArgumentException("matmul: cols " + cols + ", rows " + rows + ", batch " + batch
                    + ", row bytes " + rowBytes + ", out stride " + outStride);
        }
        if (rows == 0 || batch == 0) return;
        need(w, (rows - 1) * rowBytes + cols / 256 * blockBytes, "weights");
        need(xq, quantsBytes(batch, cols), "quants");
        need(xd, scalesBytes(type, batch, cols), "scales");
        need(xs, sumsBytes(type, batch, cols), "run sums");
        need(out, ((batch - 1) * outStride + rows) * Float.BYTES, "output");
        try {
            matmulK.invokeExact(type, w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static void need(MemorySegment s, long bytes, String what) {
        if (s.byteSize() < bytes) {
            throw new IndexOutOfBoundsException(what + ": " + bytes + " bytes needed, segment holds " + s.byteSize());
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
