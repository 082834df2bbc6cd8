package dev.kvserve.nativ.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import org.junit.jupiter.api.Test;

class KernelArgsTest {

    @Test
    void packsOnePointerPerParameterToItsValue() {
        KernelArgs args = new KernelArgs().ptr(0x7f00_1234_5600L).i32(-7).i64(1L << 40).f32(1.5f).i32(123456);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment params = args.pack(arena);
            assertThat(params.byteSize()).isEqualTo(5 * ADDRESS.byteSize());
            MemorySegment[] slot = new MemorySegment[5];
            for (int i = 0; i < 5; i++) {
                slot[i] = params.getAtIndex(ADDRESS, i).reinterpret(KernelArgs.SLOT_BYTES);
                assertThat(slot[i].address() % KernelArgs.SLOT_BYTES).as("slot %d alignment", i).isZero();
            }
            assertThat(slot[0].get(JAVA_LONG, 0)).isEqualTo(0x7f00_1234_5600L);
            assertThat(slot[1].get(JAVA_INT, 0)).isEqualTo(-7);
            assertThat(slot[2].get(JAVA_LONG, 0)).isEqualTo(1L << 40);
            assertThat(slot[3].get(JAVA_FLOAT, 0)).isEqualTo(1.5f);
            assertThat(slot[4].get(JAVA_INT, 0)).isEqualTo(123456);
            // distinct, non-overlapping slots in parameter order
            for (int i = 1; i < 5; i++) {
                assertThat(slot[i].address() - slot[i - 1].address()).isEqualTo(KernelArgs.SLOT_BYTES);
            }
        }
        assertThat(args.kinds()).containsExactly(ParamKind.PTR, ParamKind.I32, ParamKind.I64, ParamKind.F32,
                ParamKind.I32);
    }

    @Test
    void pointerOfASegmentIsItsAddress() {
        MemorySegment device = MemorySegment.ofAddress(0xdead_beef_000L).reinterpret(64);
        KernelArgs args = new KernelArgs().ptr(device.asSlice(16));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = args.pack(arena).getAtIndex(ADDRESS, 0).reinterpret(8);
            assertThat(p.get(JAVA_LONG, 0)).isEqualTo(0xdead_beef_000L + 16);
        }
    }

    @Test
    void growsPastItsInitialCapacity() {
        KernelArgs args = new KernelArgs();
        for (int i = 0; i < 40; i++) args.i32(i * 3);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment params = args.pack(arena);
            for (int i = 0; i < 40; i++) {
                assertThat(params.getAtIndex(ADDRESS, i).reinterpret(4).get(JAVA_INT, 0)).isEqualTo(i * 3);
            }
        }
    }

    @Test
    void signatureMismatchIsNamed() {
        KernelArgs args = new KernelArgs().ptr(0).f32(1f);
        assertThatThrownBy(() -> args.requireSignature("rmsnorm_f32", List.of(ParamKind.PTR, ParamKind.I32)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("rmsnorm_f32").hasMessageContaining("F32");
    }
}
