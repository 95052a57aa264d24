package fjord.interop;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One server process (ours or a reference one) with its stdout and log in files of its
 * own. Servers print {@code listening on HOST:PORT} once bound; {@link #awaitListening}
 * reads it. Every process still running when the JVM exits is killed.
 */
final class Proc {
  private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();
  private static final Pattern LISTENING = Pattern.compile("listening on (\\S+):(\\d+)");

  static {
    Runtime.getRuntime()
        .addShutdownHook(new Thread(() -> LIVE.forEach(Process::destroyForcibly)));
  }

  final String name;
  /** The command line; a restart runs it as it is then (tests pin the port after the first start). */
  final List<String> command;
  final Path stdout;
  final Path log;
  private Process process;
  private int starts;

  Proc(String name, List<String> command, Path dir) {
    this.name = name;
    this.command = new ArrayList<>(command);
    this.stdout = dir.resolve(name + ".out");
    this.log = dir.resolve(name + ".log");
  }

  /** Starts (or restarts) the process; its stdout and stderr are appended to files. */
  synchronized Proc start() throws IOException {
    if (running()) {
      throw new IllegalStateException(name + " is already running");
    }
    Files.writeString(stdout, "");
    Files.writeString(
        log,
        "=== start " + starts++ + ": " + String.join(" ", command) + "\n",
        StandardCharsets.UTF_8,
        java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.APPEND);
    ProcessBuilder builder = new ProcessBuilder(command);
    builder.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
    builder.redirectOutput(stdout.toFile());
    builder.redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
    process = builder.start();
    LIVE.add(process);
    return this;
  }

  boolean running() {
    return process != null && process.isAlive();
  }

  long pid() {
    return process.pid();
  }

  /** Waits for the {@code listening on} line and returns {@code HOST:PORT}. */
  String awaitListening(Duration timeout) throws IOException, InterruptedException {
    Instant deadline = Instant.now().plus(timeout);
    while (Instant.now().isBefore(deadline)) {
      Matcher m = LISTENING.matcher(Files.readString(stdout));
      if (m.find()) {
        return m.group(1) + ":" + m.group(2);
      }
      if (!running()) {
        throw new IllegalStateException(name + " exited before listening:\n" + tail());
      }
      Thread.sleep(50);
    }
    throw new IllegalStateException(name + " not listening after " + timeout + ":\n" + tail());
  }

  /** kill -9: no clean shutdown. */
  synchronized void kill() throws InterruptedException {
    if (process != null) {
      process.destroyForcibly();
      process.waitFor(30, TimeUnit.SECONDS);
      LIVE.remove(process);
    }
  }

  /** SIGTERM and wait for a clean exit (then kill -9). */
  synchronized void stop(Duration timeout) throws InterruptedException {
    if (process != null && process.isAlive()) {
      process.destroy();
      if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
      }
      LIVE.remove(process);
    }
  }

  /** The last lines of the log, for failure messages. */
  String tail() {
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  static List<String> cmd(Object... parts) {
    List<String> out = new ArrayList<>();
    for (Object p : parts) {
      if (p instanceof List<?> l) {
        l.forEach(x -> out.add(String.valueOf(x)));
      } else {
        out.add(String.valueOf(p));
      }
    }
    return out;
  }

  /** Removes a test's temp dir (a failed test keeps its own for reading). */
  static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (var walk = Files.walk(dir)) {
      walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
