package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.FileObject;
import javax.tools.ForwardingJavaFileManager;
import javax.tools.JavaFileManager;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The Java examples of the READMEs compile and run as written. */
@Timeout(120)
class ReadmeExampleTest {

    private static final Pattern JAVA_BLOCK = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL);

    @Test
    void readmeExamplesCompileAndRun() throws Exception {
        Path repo = Path.of(System.getProperty("kvserve.root", ".")).toAbsolutePath().normalize();
        List<String> ours = examples(repo.resolve("scheduler/README.md"));
        assertThat(ours).as("the scheduler README has an example").hasSize(1);
        assertThat(run(ours.getFirst())).containsPattern("(STOP|LENGTH) after \\d+ tokens").contains("kvserve_generation_tokens_total");
        // The repository README's examples (the lead's) must at least compile and run without throwing.
        for (String example : examples(repo.resolve("README.md"))) run(example);
    }

    private static List<String> examples(Path readme) throws IOException {
        List<String> found = new ArrayList<>();
        if (!Files.isRegularFile(readme)) return found;
        Matcher m = JAVA_BLOCK.matcher(Files.readString(readme));
        while (m.find()) if (m.group(1).contains("Engine.builder()")) found.add(m.group(1));
        return found;
    }

    /** Wraps the snippet's statements in a main method, compiles it in memory and runs it; returns what it printed. */
    private static String run(String example) throws Exception {
        var imports = new StringBuilder("import dev.kvserve.scheduler.*;\n");
        var body = new StringBuilder();
        for (String line : example.split("\n")) {
            if (line.startsWith("import ")) imports.append(line).append('\n');
            else body.append(line).append('\n');
        }
        String source = imports + "public class ReadmeExample { public static void main(String[] args) throws Exception {\n"
                + body + "}}\n";

        var compiler = ToolProvider.getSystemJavaCompiler();
        var diagnostics = new StringBuilder();
        Map<String, ByteArrayOutputStream> classes = new HashMap<>();
        StandardJavaFileManager standard = compiler.getStandardFileManager(null, null, StandardCharsets.UTF_8);
        JavaFileManager inMemory = new ForwardingJavaFileManager<>(standard) {
            @Override
            public JavaFileObject getJavaFileForOutput(Location location, String className, JavaFileObject.Kind kind, FileObject sibling) {
                return new SimpleJavaFileObject(URI.create("mem:///" + className.replace('.', '/') + kind.extension), kind) {
                    @Override public ByteArrayOutputStream openOutputStream() {
                        return classes.computeIfAbsent(className, k -> new ByteArrayOutputStream());
                    }
                };
            }
        };
        var file = new SimpleJavaFileObject(URI.create("string:///ReadmeExample.java"), JavaFileObject.Kind.SOURCE) {
            @Override public CharSequence getCharContent(boolean ignoreEncodingErrors) { return source; }
        };
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        boolean ok = compiler.getTask(null, inMemory, d -> diagnostics.append(d).append('\n'),
                List.of("-classpath", classpath, "-proc:none"), null, List.of(file)).call();
        assertThat(ok).as("README example compiles:\n" + diagnostics + "\n" + source).isTrue();

        ClassLoader loader = new ClassLoader(ReadmeExampleTest.class.getClassLoader()) {
            @Override protected Class<?> findClass(String name) throws ClassNotFoundException {
                ByteArrayOutputStream bytes = classes.get(name);
                if (bytes == null) throw new ClassNotFoundException(name);
                return defineClass(name, bytes.toByteArray(), 0, bytes.size());
            }
        };
        PrintStream original = System.out;
        var captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            loader.loadClass("ReadmeExample").getMethod("main", String[].class).invoke(null, (Object) new String[0]);
        } finally {
            System.setOut(original);
        }
        return captured.toString(StandardCharsets.UTF_8);
    }
}
