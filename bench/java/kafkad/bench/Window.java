package kafkad.bench;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Locale;
import java.util.Map;

/**
 * The measured window of one run of Kafka's perf tools, defined as kafkad-bench defines its own
 * runs' windows: it opens at the first record acknowledged (producer) or handed to the tool
 * (consumer) and closes at the N-th. The tools' own figures start before the clients have
 * connected (the consumer's subtracts its group join, the producer's counts its metadata and
 * producer-id requests) and the producer's ends after closing the client, so they are reported
 * beside this window, not instead of it.
 *
 * <p>CPU is the whole process's (every thread: the client's I/O thread, the JIT compiler, the
 * garbage collector), as the JVM reads it ({@code getProcessCpuTime}: on Linux, {@code times(2)},
 * in clock ticks of 10 ms): user and system time together, so the result line carries it as
 * user time and 0 system time.
 * Peak RSS is {@code VmHWM}. The result is one line on stdout, prefixed with {@link #PREFIX}.
 */
final class Window {
    /** The prefix kafkad-bench looks for among the tool's own lines. */
    static final String PREFIX = "kafkad-bench-window ";
    /** The client property holding N, the records the window waits for. */
    static final String MESSAGES = "kafkad.bench.messages";

    private static final com.sun.management.OperatingSystemMXBean OS =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

    private final long target;
    private final long createdNanos = System.nanoTime();
    private long count;
    private long failed;
    private long firstCount;
    private long firstNanos;
    private long firstCpu;
    private long lastNanos;
    private long lastCpu;
    private boolean reported;

    Window(Map<String, ?> configs) {
        Object messages = configs.get(MESSAGES);
        if (messages == null) {
            throw new IllegalArgumentException(MESSAGES + " is not set");
        }
        this.target = Long.parseLong(messages.toString().trim());
        // Read once here, so that loading the bean does not land in the window.
        OS.getProcessCpuTime();
    }

    synchronized void add(long records) {
        if (records <= 0 || count >= target) {
            return;
        }
        long cpu = OS.getProcessCpuTime();
        long now = System.nanoTime();
        count += records;
        if (firstNanos == 0) {
            firstNanos = now;
            firstCpu = cpu;
            firstCount = count;
        }
        if (count >= target) {
            lastNanos = now;
            lastCpu = cpu;
        }
    }

    synchronized void fail() {
        failed++;
    }

    /**
     * Prints the result line once (a client closed twice reports once). {@code producing}: the
     * records acknowledged with the first acknowledgement are before the window, as in
     * kafkad-bench's producers; a consumer's window counts all N.
     */
    synchronized void report(boolean producing) {
        if (reported) {
            return;
        }
        reported = true;
        if (count < target || failed > 0) {
            System.out.println(PREFIX + String.format(Locale.ROOT,
                "{\"error\": \"%d of %d records in the window, %d failed\"}", count, target, failed));
            return;
        }
        long messages = producing ? target - firstCount : target;
        System.out.println(PREFIX + String.format(Locale.ROOT,
            "{\"messages\": %d, \"seconds\": %.9f, \"cpu_user_s\": %.9f, \"cpu_sys_s\": 0,"
                + " \"peak_rss_mb\": %.3f, \"startup_s\": %.9f}",
            messages, (lastNanos - firstNanos) / 1e9, (lastCpu - firstCpu) / 1e9, peakRssMb(),
            (firstNanos - createdNanos) / 1e9));
    }

    /** VmHWM in MiB; 0 where /proc is unavailable. */
    private static double peakRssMb() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    String kb = line.substring("VmHWM:".length()).replace("kB", "").trim();
                    return Double.parseDouble(kb) / 1024.0;
                }
            }
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
        return 0;
    }
}
