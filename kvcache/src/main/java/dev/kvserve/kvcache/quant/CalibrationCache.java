package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Calibration files named by policy specs ({@code calib=FILE}), read once per process and file
 * version (path, size, modification time), so that re-parsing a spec does not re-read the file.
 */
final class CalibrationCache {

    private record Key(Path path, long size, long modified) {}

    private static final Map<Key, CalibrationFile.Loaded> LOADED = new ConcurrentHashMap<>();

    /** Far above any calibration of a model this runtime loads (an 8B model's KVQuant file is a few MB). */
    static final long MAX_FILE_BYTES = 1L << 30;

    private CalibrationCache() {}

    static CalibrationFile.Loaded load(String file, QuantMethod expected) {
        Path path = Path.of(file).toAbsolutePath().normalize();
        BasicFileAttributes attrs;
        try {
            attrs = Files.readAttributes(path, BasicFileAttributes.class);
        } catch (IOException e) {
            throw new IllegalArgumentException(expected.specName + ": calibration file " + path + " cannot be read (" + e.getMessage()
                    + "); make one with: kvserve calibrate --method " + expected.specName, e);
        }
        // A FIFO would block the reader forever and a device (/dev/zero) never ends: regular files
        // only, and no larger than any calibration this project writes.
        if (!attrs.isRegularFile()) {
            throw new IllegalArgumentException(expected.specName + ": calibration file " + path + " is not a regular file");
        }
        if (attrs.size() > MAX_FILE_BYTES) {
            throw new IllegalArgumentException(expected.specName + ": calibration file " + path + " has " + attrs.size()
                    + " bytes, more than the " + MAX_FILE_BYTES + " a calibration may have");
        }
        Key key = new Key(path, attrs.size(), attrs.lastModifiedTime().toMillis());
        CalibrationFile.Loaded loaded = LOADED.computeIfAbsent(key, k -> {
            try {
                return CalibrationFile.readAny(path);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
        if (loaded.calibration().method() != expected) {
            throw new IllegalArgumentException(expected.specName + ": calibration file " + path + " holds a "
                    + loaded.calibration().method().specName + " calibration");
        }
        return loaded;
    }

    /** Refuses a calibration fitted to a model of another KV geometry. */
    static void checkGeometry(Calibration cal, String file, KvGeometry geometry) {
        KvGeometry g = cal.geometry();
        if (g.layers() != geometry.layers() || g.heads() != geometry.heads() || g.kvHeads() != geometry.kvHeads()
                || g.headDim() != geometry.headDim() || !g.rope().equals(geometry.rope())) {
            throw new IllegalArgumentException(cal.method().specName + ": calibration file " + file + " was made for a model with "
                    + describe(g) + ", this model has " + describe(geometry));
        }
    }

    private static String describe(KvGeometry g) {
        return g.layers() + " layers, " + g.heads() + " heads, " + g.kvHeads() + " KV heads of " + g.headDim()
                + ", RoPE " + g.rope();
    }
}
