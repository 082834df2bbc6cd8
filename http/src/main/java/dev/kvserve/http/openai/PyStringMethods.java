package dev.kvserve.http.openai;

import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;

/**
 * Python {@code str} methods on strings inside templates. Hugging Face chat templates are written for
 * Jinja2 on Python, so they call {@code content.startswith('x')}, {@code content.strip()} or
 * {@code text.split('</think>')}; Jinjava would otherwise resolve these against java.lang.String,
 * where they are missing or mean something else ({@code split} takes a regex there).
 */
final class PyStringMethods extends ELResolver {

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (!(base instanceof String s) || !(method instanceof String name)) return null;
        Object[] p = params == null ? new Object[0] : params;
        Object result;
        switch (name) {
            case "startswith" -> result = anyMatch(p, 0, prefix -> s.startsWith(prefix));
            case "endswith" -> result = anyMatch(p, 0, suffix -> s.endsWith(suffix));
            case "strip" -> result = p.length == 0 || p[0] == null ? s.strip() : rstrip(lstrip(s, str(p[0])), str(p[0]));
            case "lstrip" -> result = p.length == 0 || p[0] == null ? s.stripLeading() : lstrip(s, str(p[0]));
            case "rstrip" -> result = p.length == 0 || p[0] == null ? s.stripTrailing() : rstrip(s, str(p[0]));
            case "upper" -> result = s.toUpperCase(Locale.ROOT);
            case "lower" -> result = s.toLowerCase(Locale.ROOT);
            case "title" -> result = title(s);
            case "capitalize" -> result = s.isEmpty() ? s : s.substring(0, 1).toUpperCase(Locale.ROOT) + s.substring(1).toLowerCase(Locale.ROOT);
            case "split" -> result = split(s, p.length > 0 ? p[0] : null, p.length > 1 ? ((Number) p[1]).intValue() : -1);
            case "splitlines" -> result = new ArrayList<>(s.lines().toList());
            case "replace" -> result = replace(s, str(p[0]), str(p[1]), p.length > 2 ? ((Number) p[2]).intValue() : -1);
            case "find" -> result = (long) s.indexOf(str(p[0]));
            case "rfind" -> result = (long) s.lastIndexOf(str(p[0]));
            case "count" -> result = (long) count(s, str(p[0]));
            case "join" -> result = join(s, p[0]);
            case "isdigit" -> result = !s.isEmpty() && s.chars().allMatch(Character::isDigit);
            case "isspace" -> result = !s.isEmpty() && s.chars().allMatch(Character::isWhitespace);
            default -> {
                return null;
            }
        }
        context.setPropertyResolved(true);
        return result;
    }

    private interface StringTest {
        boolean test(String s);
    }

    private static boolean anyMatch(Object[] p, int index, StringTest test) {
        Object arg = p.length > index ? p[index] : null;
        if (arg instanceof Collection<?> options) {
            for (Object o : options) if (test.test(str(o))) return true;
            return false;
        }
        return test.test(str(arg));
    }

    private static String str(Object o) {
        return o == null ? "" : o.toString();
    }

    private static String lstrip(String s, String chars) {
        int i = 0;
        while (i < s.length() && chars.indexOf(s.charAt(i)) >= 0) i++;
        return s.substring(i);
    }

    private static String rstrip(String s, String chars) {
        int j = s.length();
        while (j > 0 && chars.indexOf(s.charAt(j - 1)) >= 0) j--;
        return s.substring(0, j);
    }

    private static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean startOfWord = true;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            out.append(startOfWord ? Character.toUpperCase(c) : Character.toLowerCase(c));
            startOfWord = !Character.isLetter(c);
        }
        return out.toString();
    }

    /** Python semantics: no separator splits on runs of whitespace and drops empty pieces. */
    private static List<String> split(String s, Object sep, int maxSplit) {
        List<String> out = new ArrayList<>();
        if (sep == null) {
            String rest = s.strip();
            while (!rest.isEmpty()) {
                if (maxSplit >= 0 && out.size() == maxSplit) {
                    out.add(rest);
                    return out;
                }
                int end = 0;
                while (end < rest.length() && !Character.isWhitespace(rest.charAt(end))) end++;
                out.add(rest.substring(0, end));
                rest = rest.substring(end).stripLeading();
            }
            return out;
        }
        String separator = str(sep);
        if (separator.isEmpty()) throw new IllegalArgumentException("empty separator");
        int from = 0;
        while (maxSplit < 0 || out.size() < maxSplit) {
            int at = s.indexOf(separator, from);
            if (at < 0) break;
            out.add(s.substring(from, at));
            from = at + separator.length();
        }
        out.add(s.substring(from));
        return out;
    }

    private static String replace(String s, String old, String with, int count) {
        if (count < 0) return s.replace(old, with);
        StringBuilder out = new StringBuilder();
        int from = 0;
        for (int done = 0; done < count; done++) {
            int at = s.indexOf(old, from);
            if (at < 0) break;
            out.append(s, from, at).append(with);
            from = at + old.length();
            if (old.isEmpty()) {
                if (from < s.length()) out.append(s.charAt(from));
                from++;
                if (from > s.length()) break;
            }
        }
        if (from <= s.length()) out.append(s.substring(Math.min(from, s.length())));
        return out.toString();
    }

    private static int count(String s, String sub) {
        if (sub.isEmpty()) return s.length() + 1;
        int n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) n++;
        return n;
    }

    private static String join(String separator, Object items) {
        StringBuilder out = new StringBuilder();
        if (items instanceof Iterable<?> it) {
            Iterator<?> i = it.iterator();
            while (i.hasNext()) {
                out.append(str(i.next()));
                if (i.hasNext()) out.append(separator);
            }
            return out.toString();
        }
        return str(items);
    }

    // Only method calls are handled here; property reads fall through to the other resolvers.
    @Override public Object getValue(ELContext context, Object base, Object property) { return null; }
    @Override public Class<?> getType(ELContext context, Object base, Object property) { return null; }
    @Override public void setValue(ELContext context, Object base, Object property, Object value) {}
    @Override public boolean isReadOnly(ELContext context, Object base, Object property) { return true; }
    @Override public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) { return null; }
    @Override public Class<?> getCommonPropertyType(ELContext context, Object base) { return null; }
}
