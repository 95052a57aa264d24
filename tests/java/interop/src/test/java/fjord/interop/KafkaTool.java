package fjord.interop;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs one of Apache Kafka's command-line tools (the 4.4.0 tools jar, as
 * {@code bin/kafka-*.sh} would) in a JVM of its own, on the classpath ../kafka-4.4 wrote.
 */
final class KafkaTool {
  private KafkaTool() {}

  /** Small JVMs start fast on two cores. */
  static final List<String> JVM =
      List.of(
          "-Xmx256m",
          "-XX:+UseSerialGC",
          "-XX:TieredStopAtLevel=1",
          "-Xshare:auto",
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
          "-Dorg.slf4j.simpleLogger.logFile=System.err");

  record Result(int exit, String stdout, String stderr) {
    String out() {
      return stdout;
    }

    @Override
    public String toString() {
      return "exit " + exit + "\n--- stdout ---\n" + stdout + "\n--- stderr ---\n" + stderr;
    }
  }

  static String classpath(String property) {
    String file = System.getProperty(property);
    if (file == null) {
      throw new IllegalStateException("-D" + property + " is not set: run the tests through Maven");
    }
    try {
      return Files.readString(Paths.get(file)).trim();
    } catch (IOException e) {
      throw new IllegalStateException("no classpath at " + file + ": run mvn package first", e);
    }
  }

  static String javaBin() {
    return Paths.get(System.getProperty("java.home"), "bin", "java").toString();
  }

  /** Runs {@code mainClass args} with Kafka 4.4's classpath; {@code stdin} may be null. */
  static Result run(String mainClass, String stdin, long timeoutSeconds, String... args)
      throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(javaBin());
    cmd.addAll(JVM);
    cmd.add("-cp");
    cmd.add(classpath("fjord.kafka44.classpath"));
    cmd.add(mainClass);
    cmd.addAll(List.of(args));
    return exec(cmd, stdin, timeoutSeconds);
  }

  static Result exec(List<String> cmd, String stdin, long timeoutSeconds)
      throws IOException, InterruptedException {
    Path out = Files.createTempFile("tool-", ".out");
    Path err = Files.createTempFile("tool-", ".err");
    try {
      ProcessBuilder b = new ProcessBuilder(cmd);
      b.redirectOutput(out.toFile());
      b.redirectError(err.toFile());
      if (stdin == null) {
        b.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
      }
      Process p = b.start();
      if (stdin != null) {
        try (var w = p.getOutputStream()) {
          w.write(stdin.getBytes(StandardCharsets.UTF_8));
        }
      }
      if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
        throw new AssertionError(
            "timed out after " + timeoutSeconds + " s: " + String.join(" ", cmd)
                + "\n--- stdout ---\n" + Files.readString(out)
                + "\n--- stderr ---\n" + Files.readString(err));
      }
      return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }
}
