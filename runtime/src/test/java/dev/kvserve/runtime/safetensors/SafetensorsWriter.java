package dev.kvserve.runtime.safetensors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Writes .safetensors files for tests, laid out as the safetensors library lays them out. */
final class SafetensorsWriter {

    record Entry(String name, String dtype, long[] shape, byte[] data) {}

    private final List<Entry> entries = new ArrayList<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    SafetensorsWriter add(String name, String dtype, long[] shape, byte[] data) {
        entries.add(new Entry(name, dtype, shape, data));
        return this;
    }

    SafetensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    void write(Path file) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode header = json.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode md = header.putObject("__metadata__");
            metadata.forEach(md::put);
        }
        long offset = 0;
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        for (Entry e : entries) {
            ObjectNode t = header.putObject(e.name());
            t.put("dtype", e.dtype());
            ArrayNode shape = t.putArray("shape");
            for (long d : e.shape()) shape.add(d);
            t.putArray("data_offsets").add(offset).add(offset + e.data().length);
            offset += e.data().length;
            data.write(e.data());
        }
        byte[] headerBytes = json.writeValueAsBytes(header);
        int padded = (headerBytes.length + 7) / 8 * 8;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
        out.write(headerBytes);
        out.write(" ".repeat(padded - headerBytes.length).getBytes(StandardCharsets.US_ASCII));
        out.write(data.toByteArray());
        Files.write(file, out.toByteArray());
    }
}
