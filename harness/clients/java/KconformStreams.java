// kconform's Kafka Streams application: one instance per JVM, started by
// harness/clients/java_streams.py.
//
// Why: Kafka Streams with processing.guarantee=exactly_once_v2 (KIP-447) is the most common
// consume-transform-produce application; its promise (every input record reflected exactly once
// in the output and in the state) rests on the broker's transactions, consumer groups and
// committed offsets. This program makes that promise checkable from outside: every output record
// names the input record it came from, and carries the state the record was processed with.
//
// Topology: the input topic -> one processor with an in-memory key-value store "counts" (input
// partition -> records processed so far, backed by a changelog topic, so EOS covers it) -> the
// output topic. For the input record with value V at partition P, offset O, the output record's
// key is "P" and its value is "V@P:O#N", N the count after it (1 for the first record of P).
//
// Usage: KconformStreams <config.properties>; the file holds the Streams configuration
// (application.id, bootstrap.servers, processing.guarantee, ...) and three kconform keys:
// kconform.input, kconform.output, kconform.instance. Events go to stdout, one JSON object a
// line: {"event":"state","from":S,"to":S} on each state change, {"event":"running",
// "partitions":[[topic,partition],...]} whenever the instance is RUNNING with its input
// partitions, {"event":"error","message":M} for an exception a stream thread died of (the
// thread is replaced), {"event":"stopped"} when it closed. The program closes Streams and exits
// when its stdin reaches end of file (the harness closed it, or died).

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.TreeSet;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.ThreadMetadata;
import org.apache.kafka.streams.TaskMetadata;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

public final class KconformStreams {
    static final String STORE = "counts";
    static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(20);
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static synchronized void emit(String json) {
        OUT.println(json);
    }

    /** Names each input record in its output and counts the records of its partition. */
    static final class Tag implements Processor<byte[], String, String, String> {
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, Long> counts;

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.counts = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<byte[], String> record) {
            RecordMetadata where = context.recordMetadata().orElseThrow();
            String key = Integer.toString(where.partition());
            Long before = counts.get(key);
            long count = (before == null ? 0 : before) + 1;
            counts.put(key, count);
            String value = record.value() + "@" + where.partition() + ":" + where.offset() + "#" + count;
            context.forward(new Record<>(key, value, record.timestamp()));
        }
    }

    static String partitions(KafkaStreams streams) {
        TreeSet<String> out = new TreeSet<>();
        for (ThreadMetadata thread : streams.metadataForLocalThreads()) {
            for (TaskMetadata task : thread.activeTasks()) {
                for (TopicPartition tp : task.topicPartitions()) {
                    out.add("[" + quote(tp.topic()) + "," + tp.partition() + "]");
                }
            }
        }
        return "[" + String.join(",", out) + "]";
    }

    public static void main(String[] args) throws IOException, InterruptedException {
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        String input = (String) props.remove("kconform.input");
        String output = (String) props.remove("kconform.output");
        props.remove("kconform.instance");

        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(STORE), Serdes.String(),
                                                          Serdes.Long()));
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.String()))
               .process(Tag::new, STORE)
               .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setStateListener((to, from) -> {
            emit("{\"event\":\"state\",\"from\":" + quote(from.name()) + ",\"to\":" + quote(to.name()) + "}");
            if (to == KafkaStreams.State.RUNNING) {
                emit("{\"event\":\"running\",\"partitions\":" + partitions(streams) + "}");
            }
        });
        streams.setUncaughtExceptionHandler(exception -> {
            emit("{\"event\":\"error\",\"message\":" + quote(String.valueOf(exception)) + "}");
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();

        // Runs until the harness closes stdin (or dies, which closes it too).
        byte[] buffer = new byte[256];
        while (System.in.read(buffer) >= 0) {
            // Nothing is read from stdin but its end.
        }
        streams.close(CLOSE_TIMEOUT);
        emit("{\"event\":\"stopped\"}");
    }
}
