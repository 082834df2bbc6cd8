package dev.kvserve.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Rows of named values, written as a markdown table (for people) and as CSV or JSON (for scripts).
 * Machine-readable output carries every field at full precision; the table shows formatted columns.
 * Values are strings, numbers (doubles printed with up to 17 significant digits) or arrays of doubles.
 */
public final class Report {

    /** A table column: header, and how to render a row's fields. */
    public record Column(String header, boolean rightAligned, java.util.function.Function<Map<String, Object>, String> render) {}

    private final List<Map<String, Object>> rows = new ArrayList<>();

    public Map<String, Object> addRow() {
        Map<String, Object> row = new LinkedHashMap<>();
        rows.add(row);
        return row;
    }

    public List<Map<String, Object>> rows() {
        return rows;
    }

    public static String markdown(List<Column> columns, List<Map<String, Object>> rows) {
        String[][] cells = new String[rows.size()][columns.size()];
        int[] width = new int[columns.size()];
        for (int c = 0; c < columns.size(); c++) width[c] = Math.max(3, columns.get(c).header().length());
        for (int r = 0; r < rows.size(); r++) {
            for (int c = 0; c < columns.size(); c++) {
                cells[r][c] = columns.get(c).render().apply(rows.get(r));
                width[c] = Math.max(width[c], cells[r][c].length());
            }
        }
        StringBuilder sb = new StringBuilder();
        line(sb, columns, width, c -> columns.get(c).header());
        sb.append('|');
        for (int c = 0; c < columns.size(); c++) {
            String dashes = "-".repeat(width[c] + (columns.get(c).rightAligned() ? 1 : 2));
            sb.append(columns.get(c).rightAligned() ? dashes + ":" : dashes).append('|');
        }
        sb.append('\n');
        for (String[] row : cells) line(sb, columns, width, c -> row[c]);
        return sb.toString();
    }

    private static void line(StringBuilder sb, List<Column> columns, int[] width, java.util.function.IntFunction<String> cell) {
        sb.append('|');
        for (int c = 0; c < columns.size(); c++) {
            String s = cell.apply(c);
            String pad = " ".repeat(width[c] - s.length());
            sb.append(' ').append(columns.get(c).rightAligned() ? pad + s : s + pad).append(" |");
        }
        sb.append('\n');
    }

    /** Refuses an output name whose format is unknown, before any work is done. */
    public static void checkName(Path out) {
        isJson(out);
    }

    /** Whether {@code out} names a JSON file (else CSV); any other extension is refused. */
    private static boolean isJson(Path out) {
        String name = out.getFileName().toString().toLowerCase(Locale.ROOT);
        if (!name.endsWith(".json") && !name.endsWith(".csv")) {
            throw new IllegalArgumentException("--out " + out + ": the file name must end in .json or .csv");
        }
        return name.endsWith(".json");
    }

    /** Writes CSV or JSON, chosen by the file's extension. */
    public void write(Path out) {
        String text = isJson(out) ? json() : csv();
        try {
            Path parent = out.toAbsolutePath().getParent();
            if (parent != null) Files.createDirectories(parent);
            Files.writeString(out, text);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }

    public String csv() {
        StringBuilder sb = new StringBuilder();
        if (rows.isEmpty()) return "";
        List<String> keys = new ArrayList<>(rows.getFirst().keySet());
        sb.append(String.join(",", keys.stream().map(Report::csvCell).toList())).append('\n');
        for (Map<String, Object> row : rows) {
            List<String> cells = new ArrayList<>();
            for (String k : keys) cells.add(csvCell(scalar(row.get(k), ";")));
            sb.append(String.join(",", cells)).append('\n');
        }
        return sb.toString();
    }

    public String json() {
        StringBuilder sb = new StringBuilder("[\n");
        for (int r = 0; r < rows.size(); r++) {
            sb.append("  {");
            int i = 0;
            for (Map.Entry<String, Object> e : rows.get(r).entrySet()) {
                if (i++ > 0) sb.append(", ");
                sb.append(jsonString(e.getKey())).append(": ").append(jsonValue(e.getValue()));
            }
            sb.append(r + 1 < rows.size() ? "},\n" : "}\n");
        }
        return sb.append("]\n").toString();
    }

    private static String scalar(Object v, String arraySeparator) {
        if (v == null) return "";
        if (v instanceof double[] a) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < a.length; i++) sb.append(i > 0 ? arraySeparator : "").append(number(a[i]));
            return sb.toString();
        }
        if (v instanceof Double d) return number(d);
        if (v instanceof Float f) return number(f);
        return v.toString();
    }

    private static String number(double d) {
        if (Double.isNaN(d) || Double.isInfinite(d)) return "";
        if (d == Math.rint(d) && Math.abs(d) < 1e15) return Long.toString((long) d);
        return Double.toString(d);
    }

    private static String jsonValue(Object v) {
        if (v == null) return "null";
        if (v instanceof double[] a) {
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < a.length; i++) sb.append(i > 0 ? ", " : "").append(jsonNumber(a[i]));
            return sb.append(']').toString();
        }
        if (v instanceof Double d) return jsonNumber(d);
        if (v instanceof Number || v instanceof Boolean) return v.toString();
        return jsonString(v.toString());
    }

    private static String jsonNumber(double d) {
        return Double.isNaN(d) || Double.isInfinite(d) ? "null" : number(d);
    }

    private static String jsonString(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        return sb.append('"').toString();
    }

    private static String csvCell(String s) {
        if (s.indexOf(',') < 0 && s.indexOf('"') < 0 && s.indexOf('\n') < 0) return s;
        return '"' + s.replace("\"", "\"\"") + '"';
    }
}
