/*
 * KconformClient: ONE Apache Kafka Java client (a KafkaProducer or a KafkaConsumer) driven by
 * kconform's Python harness (harness/clients/java_client.py) over stdin and stdout.
 *
 * Why it exists: kconform's workloads must be able to run with the client Apache Kafka itself is
 * tested with, so that an anomaly caused by one client library (librdkafka, kafka-python) can be
 * told apart from a broker bug by replaying the same fault schedule with the Java client. This
 * program is the smallest host for that client: it makes no decisions of its own, it turns each
 * command into the matching KafkaProducer / KafkaConsumer call and reports what the client said.
 *
 * Compiled by the harness with javac (--release 11) against the kafka-clients jar of the chosen
 * Kafka version and run with that version's jars on the classpath. It uses only kafka-clients
 * and jackson-databind, which every Kafka broker distribution (our jar cache) carries.
 *
 * Protocol: one JSON object per line, UTF-8, in both directions.
 *
 *   stdin, commands:  {"id": N, "op": "...", ...}; ids grow; the first command is "open":
 *                     {"id": 0, "op": "open", "role": "producer"|"consumer", "config": {key: "value"}}
 *   stdout, replies:  {"re": N, ...}, one per command, in command order except "flush" (answered
 *                     from a helper thread when the flush returns). A failed command's reply has
 *                     "error" (a name, below) and "message".
 *   stdout, events:   {"ev": "ack", "id": N, "partition": P, "offset": O} or
 *                     {"ev": "ack", "id": N, "error": NAME, "message": "...", "partition": P|null}:
 *                     the completion of the record sent by command N, from the producer's callback.
 *
 *   Producer commands: send {topic, partition|null, key|null, value|null} (reply: accepted, or the
 *                      error the client raised before the record was appended to its buffer: such
 *                      a record was certainly not sent and gets no "ack"), flush, close {timeout_ms},
 *                      init_transactions, begin_transaction, commit_transaction, abort_transaction,
 *                      send_offsets {offsets: [[t, p, o]], group: {group_id, generation_id,
 *                      member_id, group_instance_id|null}} (sendOffsetsToTransaction, KIP-447: the
 *                      consumer runs in another JVM, so its group metadata travels as JSON).
 *   Consumer commands: assign {partitions: [[t, p]], offsets: [[t, p, o]], reset}, subscribe
 *                      {topics}, seek {topic, partition, offset}, poll {timeout_ms} (reply:
 *                      records [[t, p, offset, key, value]]), commit {offsets: [[t, p, o]],
 *                      timeout_ms}, committed {partitions, timeout_ms} (reply: offsets [[t, p, o]],
 *                      -1 where none), group_metadata (reply: group_id, generation_id, member_id,
 *                      group_instance_id|null), close {timeout_ms}. Any consumer reply carries
 *                      "rebalances": [{partitions, generation, member}] when the rebalance listener
 *                      ran during the command (the Java consumer calls it only from inside its
 *                      own methods, on this thread, so the harness applies rebalances in order).
 *
 * Keys and values are bytes and travel as base64 strings (standard alphabet, padded); JSON null is
 * a null key or value. Base64 rather than text because a consumer can read any bytes.
 *
 * Error names are Kafka's upper-case protocol error names (org.apache.kafka.common.protocol.Errors,
 * e.g. NOT_ENOUGH_REPLICAS, MESSAGE_TOO_LARGE), found from the exception class, except:
 * org.apache.kafka.common.errors.TimeoutException -> TIMEOUT (the client gave up waiting; Errors
 * would call it REQUEST_TIMED_OUT), a disconnection or a closed client -> DISCONNECTED, and other
 * exceptions -> their class name in upper snake case without "Exception" (CommitFailedException ->
 * COMMIT_FAILED, IllegalStateException -> ILLEGAL_STATE).
 *
 * Run with "--train BOOTSTRAP" instead, it plays a producer and a consumer against an address where
 * nothing listens and exits: the harness runs that once, when it builds the program, with
 * -XX:ArchiveClassesAtExit, to save the classes a client loads into a class-data-sharing archive
 * that makes every later JVM start faster.
 *
 * stdout carries the protocol only: System.out is pointed at stderr before anything else runs, so
 * nothing the libraries print can corrupt it; logging goes to stderr (the harness passes a log4j
 * configuration). When stdin closes (the harness exited or died) the client is closed and the JVM
 * exits; a watchdog halts it if closing hangs, so no JVM outlives its harness.
 */

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.BufferedOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.DisconnectException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnknownServerException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class KconformClient {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Base64.Encoder B64 = Base64.getEncoder();
    private static final Base64.Decoder B64D = Base64.getDecoder();
    /** How long the JVM may take to close its client once stdin closed, before it halts. */
    private static final long ORPHAN_CLOSE_MS = 5_000;

    /** What the command loop does after a command: reply, reply and exit, or nothing (the reply
     * comes later from another thread). */
    private static final int CONTINUE = 0;
    private static final int EXIT = 1;
    private static final int DEFERRED = 2;

    private static PrintStream protocol;
    /** The hosted client, once opened. */
    private static Role role;
    private static Thread mainThread;

    private KconformClient() {
    }

    public static void main(String[] args) throws Exception {
        // The real stdout is the protocol channel; anything else printing to System.out goes to stderr.
        protocol = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16),
                                   false, "UTF-8");
        System.setOut(System.err);
        mainThread = Thread.currentThread();
        if (args.length == 2 && "--train".equals(args[0])) {
            train(args[1]);
            halt(0);
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8), 1 << 16);
        String line;
        while ((line = in.readLine()) != null) {
            if (step(line)) {
                halt(0);
            }
        }
        // stdin closed without a close command: the harness is gone. Close the client and exit,
        // halting if that takes too long.
        watchdog(ORPHAN_CLOSE_MS + 2_000);
        if (role != null) {
            try {
                role.close(Duration.ofMillis(ORPHAN_CLOSE_MS));
            } catch (Exception e) {
                // nothing to report to: the harness is gone
            }
        }
        halt(0);
    }

    /** Run one command line and reply to it; true when the JVM should exit now (the client was
     * closed, or could not be created). */
    static boolean step(String line) throws Exception {
        if (line.isEmpty()) {
            return false;
        }
        JsonNode cmd = JSON.readTree(line);
        ObjectNode reply = JSON.createObjectNode();
        reply.put("re", cmd.path("id").asLong());
        String op = cmd.path("op").asText();
        int next = CONTINUE;
        try {
            if (role == null) {
                if (!"open".equals(op)) {
                    throw new IllegalArgumentException("the first command must be open, not " + op);
                }
                role = open(cmd);
                reply.put("version", kafkaVersion());
            } else {
                next = role.handle(op, cmd, reply);
            }
        } catch (Exception e) {
            failure(reply, e);
            if (role == null) {
                next = EXIT;  // the client could not be created: nothing to serve
            }
        }
        if (role != null) {
            role.decorate(reply);
        }
        if (next != DEFERRED) {
            emit(reply);
        }
        return next == EXIT;
    }

    /** --train BOOTSTRAP: use a producer and a consumer the way the harness does, against an
     * address where nothing listens (nothing is sent), so that the JVM loads the classes they
     * need and, run with -XX:ArchiveClassesAtExit, saves them into a class-data-sharing archive
     * from which later JVMs start faster. The replies go to stdout as usual (the harness
     * discards them). */
    static void train(String bootstrap) throws Exception {
        String b = JSON.writeValueAsString(bootstrap);
        String[] script = {
            "{\"id\":0,\"op\":\"open\",\"role\":\"producer\",\"config\":{\"bootstrap.servers\":" + b
                + ",\"max.block.ms\":\"300\",\"enable.idempotence\":\"true\",\"acks\":\"all\"}}",
            "{\"id\":1,\"op\":\"send\",\"topic\":\"t\",\"partition\":0,\"key\":\"aw==\",\"value\":\"dg==\"}",
            "{\"id\":2,\"op\":\"send\",\"topic\":\"t\",\"partition\":null,\"key\":null,\"value\":\"dg==\"}",
            "{\"id\":3,\"op\":\"close\",\"timeout_ms\":0}",
            "{\"id\":4,\"op\":\"open\",\"role\":\"consumer\",\"config\":{\"bootstrap.servers\":" + b
                + ",\"group.id\":\"kconform-train\",\"enable.auto.commit\":\"false\"}}",
            "{\"id\":5,\"op\":\"assign\",\"partitions\":[[\"t\",0],[\"t\",1]],\"offsets\":[[\"t\",0,0]],\"reset\":\"earliest\"}",
            "{\"id\":6,\"op\":\"poll\",\"timeout_ms\":100}",
            "{\"id\":7,\"op\":\"commit\",\"offsets\":[[\"t\",0,1]],\"timeout_ms\":100}",
            "{\"id\":8,\"op\":\"committed\",\"partitions\":[[\"t\",0]],\"timeout_ms\":100}",
            "{\"id\":9,\"op\":\"close\",\"timeout_ms\":0}",
        };
        for (String line : script) {
            if (step(line)) {
                role = null;  // closed: the next open starts the other client
            }
        }
    }

    private static void halt(int status) {
        protocol.flush();
        System.err.flush();
        System.exit(status);
    }

    /** Halt the JVM after `ms` milliseconds whatever it is doing (a close that hangs). */
    private static void watchdog(long ms) {
        Thread t = new Thread(() -> {
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                return;
            }
            Runtime.getRuntime().halt(3);
        }, "kconform-watchdog");
        t.setDaemon(true);
        t.start();
    }

    static void emit(ObjectNode node) {
        String text;
        try {
            text = JSON.writeValueAsString(node);
        } catch (Exception e) {
            text = "{\"ev\":\"internal\",\"message\":\"cannot encode a reply\"}";
        }
        synchronized (protocol) {
            protocol.print(text);
            protocol.print('\n');
            protocol.flush();
        }
    }

    static String kafkaVersion() {
        try (InputStream s = KafkaProducer.class.getClassLoader().getResourceAsStream("kafka/kafka-version.properties")) {
            Properties p = new Properties();
            if (s != null) {
                p.load(s);
            }
            return p.getProperty("version", "unknown");
        } catch (Exception e) {
            return "unknown";
        }
    }

    // --- error names -------------------------------------------------------------------------

    static void failure(ObjectNode node, Throwable e) {
        node.put("error", errorName(e));
        node.put("message", e.getClass().getName() + ": " + e.getMessage());
    }

    static String errorName(Throwable t) {
        Throwable e = t;
        while ((e instanceof ExecutionException || e instanceof CompletionException) && e.getCause() != null) {
            e = e.getCause();
        }
        if (e instanceof TimeoutException) {
            return "TIMEOUT";
        }
        if (e instanceof DisconnectException) {
            return "DISCONNECTED";
        }
        Errors error = Errors.forException(e);
        if (error != Errors.UNKNOWN_SERVER_ERROR || e instanceof UnknownServerException) {
            return error.name();
        }
        String message = String.valueOf(e.getMessage()).toLowerCase();
        // "Producer is closed forcefully.", "Cannot perform operation after producer has been closed",
        // "This consumer has already been closed.": the client is gone, as if disconnected.
        if ((e instanceof KafkaException || e instanceof IllegalStateException) && message.contains("closed")) {
            return "DISCONNECTED";
        }
        if (e instanceof KafkaException && e.getCause() instanceof KafkaException && e.getCause() != e) {
            // A plain KafkaException wrapping a more precise one (e.g. a fatal idempotence error).
            String inner = errorName(e.getCause());
            if (!inner.equals("KAFKA")) {
                return inner;
            }
        }
        return upperSnake(e.getClass().getSimpleName().replaceAll("(Exception|Error)$", ""));
    }

    static String upperSnake(String camel) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < camel.length(); i++) {
            char c = camel.charAt(i);
            if (Character.isUpperCase(c) && i > 0 && !Character.isUpperCase(camel.charAt(i - 1))) {
                out.append('_');
            }
            out.append(Character.toUpperCase(c));
        }
        return out.length() == 0 ? "UNKNOWN" : out.toString();
    }

    // --- JSON helpers ------------------------------------------------------------------------

    static String b64(byte[] data) {
        return data == null ? null : B64.encodeToString(data);
    }

    static byte[] bytes(JsonNode node) {
        return node == null || node.isNull() || node.isMissingNode() ? null : B64D.decode(node.asText());
    }

    static List<TopicPartition> partitions(JsonNode array) {
        List<TopicPartition> out = new ArrayList<>();
        for (JsonNode tp : array) {
            out.add(new TopicPartition(tp.get(0).asText(), tp.get(1).asInt()));
        }
        return out;
    }

    /** [[topic, partition, offset]] as the offsets to commit. */
    static Map<TopicPartition, OffsetAndMetadata> offsets(JsonNode array) {
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        for (JsonNode o : array) {
            out.put(new TopicPartition(o.get(0).asText(), o.get(1).asInt()), new OffsetAndMetadata(o.get(2).asLong()));
        }
        return out;
    }

    /** A consumer's group metadata, as its own JVM's group_metadata reply gave it. */
    static ConsumerGroupMetadata groupMetadata(JsonNode group) {
        JsonNode instance = group.path("group_instance_id");
        return new ConsumerGroupMetadata(group.path("group_id").asText(), group.path("generation_id").asInt(),
                                         group.path("member_id").asText(),
                                         instance.isNull() || instance.isMissingNode()
                                             ? Optional.empty() : Optional.of(instance.asText()));
    }

    static Properties config(JsonNode cmd) {
        Properties props = new Properties();
        for (Map.Entry<String, JsonNode> field : cmd.path("config").properties()) {
            props.put(field.getKey(), field.getValue().asText());
        }
        return props;
    }

    static Role open(JsonNode cmd) {
        String role = cmd.path("role").asText();
        if ("producer".equals(role)) {
            return new Producer(config(cmd));
        }
        if ("consumer".equals(role)) {
            return new Consumer(config(cmd));
        }
        throw new IllegalArgumentException("unknown role " + role);
    }

    /** One hosted client. */
    interface Role {
        /** Run one command, filling in its reply; CONTINUE, EXIT (after replying) or DEFERRED. */
        int handle(String op, JsonNode cmd, ObjectNode reply) throws Exception;

        /** Add what happened during the command that is not its answer (rebalances). */
        void decorate(ObjectNode reply);

        void close(Duration timeout);
    }

    // --- producer ----------------------------------------------------------------------------

    static final class Producer implements Role {
        private final KafkaProducer<byte[], byte[]> producer;

        Producer(Properties props) {
            producer = new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer());
        }

        /** The completion of one send. The Java producer reports an error it raises before the
         * record reaches its buffer (record too large, metadata not available within max.block.ms)
         * by calling the callback synchronously, on the sending thread, inside send(): such a
         * record was certainly not sent, so it is answered in the reply to the send command rather
         * than as an ack (the harness then records a definite failure). */
        static final class Completion implements Callback {
            final long id;
            volatile boolean inSend = true;
            Exception rejected;

            Completion(long id) {
                this.id = id;
            }

            @Override
            public void onCompletion(RecordMetadata md, Exception e) {
                if (inSend && Thread.currentThread() == mainThread && e != null) {
                    rejected = e;
                    return;
                }
                ObjectNode ev = JSON.createObjectNode();
                ev.put("ev", "ack");
                ev.put("id", id);
                boolean known = md != null && md.partition() >= 0;
                if (known) {
                    ev.put("partition", md.partition());
                } else {
                    ev.putNull("partition");
                }
                if (e != null) {
                    failure(ev, e);
                } else if (md != null && md.hasOffset()) {
                    ev.put("offset", md.offset());
                } else {
                    ev.putNull("offset");  // acks=0: the broker says nothing
                }
                emit(ev);
            }
        }

        @Override
        public int handle(String op, JsonNode cmd, ObjectNode reply) {
            switch (op) {
                case "send":
                    send(cmd, reply);
                    return CONTINUE;
                case "flush":
                    flush(reply);
                    return DEFERRED;  // answered by the flushing thread
                case "init_transactions":
                    transactional(op, reply, producer::initTransactions);
                    return CONTINUE;
                case "begin_transaction":
                    transactional(op, reply, producer::beginTransaction);
                    return CONTINUE;
                case "commit_transaction":
                    transactional(op, reply, producer::commitTransaction);
                    return CONTINUE;
                case "abort_transaction":
                    transactional(op, reply, producer::abortTransaction);
                    return CONTINUE;
                case "send_offsets": {
                    Map<TopicPartition, OffsetAndMetadata> offsets = offsets(cmd.path("offsets"));
                    ConsumerGroupMetadata group = groupMetadata(cmd.path("group"));
                    transactional(op, reply, () -> producer.sendOffsetsToTransaction(offsets, group));
                    return CONTINUE;
                }
                case "close":
                    close(Duration.ofMillis(cmd.path("timeout_ms").asLong(10_000)));
                    return EXIT;
                default:
                    throw new IllegalArgumentException("unknown producer command " + op);
            }
        }

        private void send(JsonNode cmd, ObjectNode reply) {
            JsonNode partition = cmd.path("partition");
            ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                cmd.path("topic").asText(), partition.isNull() || partition.isMissingNode() ? null : partition.asInt(),
                bytes(cmd.get("key")), bytes(cmd.get("value")));
            Completion completion = new Completion(cmd.path("id").asLong());
            try {
                producer.send(record, completion);
            } catch (Exception e) {
                // Thrown by send() itself (a closed producer, a fatal error): not appended either.
                completion.rejected = e;
            } finally {
                completion.inSend = false;
            }
            if (completion.rejected != null) {
                failure(reply, completion.rejected);
            }
        }

        /** A transactional method (each returns within max.block.ms). A failure is answered with
         * what the producer needs next, as KafkaProducer's documentation sorts its exceptions:
         * "fatal" (it can only be closed: fenced, an unrecoverable sequence, an unsupported or
         * unauthorised operation, or an abort that failed), "abortable" (abortTransaction, then
         * go on), or neither (a timeout: the same call may be made again). */
        private void transactional(String op, ObjectNode reply, Runnable call) {
            try {
                call.run();
            } catch (TimeoutException e) {
                failure(reply, e);
            } catch (KafkaException | IllegalStateException e) {
                failure(reply, e);
                boolean fatal = "abort_transaction".equals(op) || e instanceof IllegalStateException || fatalInChain(e);
                reply.put(fatal ? "fatal" : "abortable", true);
            }
        }

        private static boolean fatalInChain(Throwable t) {
            for (Throwable e = t; e != null; e = e.getCause() == e ? null : e.getCause()) {
                if (e instanceof ProducerFencedException || e instanceof InvalidProducerEpochException
                        || e instanceof OutOfOrderSequenceException || e instanceof AuthorizationException
                        || e instanceof UnsupportedVersionException) {
                    return true;
                }
            }
            return false;
        }

        /** KafkaProducer.flush() has no timeout (it returns when every record is complete, i.e.
         * within delivery.timeout.ms): it runs aside so the command loop keeps serving sends. */
        private void flush(ObjectNode reply) {
            final long id = reply.path("re").asLong();
            Thread t = new Thread(() -> {
                ObjectNode done = JSON.createObjectNode();
                done.put("re", id);
                try {
                    producer.flush();
                } catch (Exception e) {
                    failure(done, e);
                }
                emit(done);
            }, "kconform-flush-" + id);
            t.setDaemon(true);
            t.start();
        }

        @Override
        public void decorate(ObjectNode reply) {
        }

        @Override
        public void close(Duration timeout) {
            producer.close(timeout);
        }
    }

    // --- consumer ----------------------------------------------------------------------------

    static final class Consumer implements Role {
        private final KafkaConsumer<byte[], byte[]> consumer;
        private final List<ObjectNode> rebalances = new ArrayList<>();

        Consumer(Properties props) {
            consumer = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        }

        /** Records each assignment as the FULL set of owned partitions (consumer.assignment(),
         * already updated when the listener runs), so that an incremental (cooperative) rebalance
         * reports the same thing as an eager one; with the group generation and member id. */
        private final ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                ObjectNode event = JSON.createObjectNode();
                ArrayNode owned = event.putArray("partitions");
                for (TopicPartition tp : consumer.assignment()) {
                    ArrayNode pair = owned.addArray();
                    pair.add(tp.topic());
                    pair.add(tp.partition());
                }
                try {
                    event.put("generation", consumer.groupMetadata().generationId());
                    event.put("member", consumer.groupMetadata().memberId());
                } catch (Exception e) {
                    event.putNull("generation");
                    event.putNull("member");
                }
                rebalances.add(event);
            }
        };

        @Override
        public int handle(String op, JsonNode cmd, ObjectNode reply) {
            switch (op) {
                case "assign":
                    assign(cmd);
                    return CONTINUE;
                case "subscribe": {
                    List<String> topics = new ArrayList<>();
                    for (JsonNode t : cmd.path("topics")) {
                        topics.add(t.asText());
                    }
                    consumer.subscribe(topics, listener);
                    return CONTINUE;
                }
                case "seek":
                    consumer.seek(new TopicPartition(cmd.path("topic").asText(), cmd.path("partition").asInt()),
                                  cmd.path("offset").asLong());
                    return CONTINUE;
                case "poll":
                    poll(cmd, reply);
                    return CONTINUE;
                case "commit":
                    consumer.commitSync(offsets(cmd.path("offsets")),
                                        Duration.ofMillis(cmd.path("timeout_ms").asLong(30_000)));
                    return CONTINUE;
                case "group_metadata": {
                    ConsumerGroupMetadata group = consumer.groupMetadata();
                    reply.put("group_id", group.groupId());
                    reply.put("generation_id", group.generationId());
                    reply.put("member_id", group.memberId());
                    if (group.groupInstanceId().isPresent()) {
                        reply.put("group_instance_id", group.groupInstanceId().get());
                    } else {
                        reply.putNull("group_instance_id");
                    }
                    return CONTINUE;
                }
                case "committed":
                    committed(cmd, reply);
                    return CONTINUE;
                case "close":
                    close(Duration.ofMillis(cmd.path("timeout_ms").asLong(10_000)));
                    return EXIT;
                default:
                    throw new IllegalArgumentException("unknown consumer command " + op);
            }
        }

        private void assign(JsonNode cmd) {
            List<TopicPartition> tps = partitions(cmd.path("partitions"));
            consumer.assign(tps);
            Map<TopicPartition, Long> offsets = new HashMap<>();
            for (JsonNode o : cmd.path("offsets")) {
                offsets.put(new TopicPartition(o.get(0).asText(), o.get(1).asInt()), o.get(2).asLong());
            }
            List<TopicPartition> rest = new ArrayList<>();
            for (TopicPartition tp : tps) {
                Long offset = offsets.get(tp);
                if (offset != null) {
                    consumer.seek(tp, offset);
                } else {
                    rest.add(tp);
                }
            }
            // Partitions without an offset start at the reset policy's end, whatever the group
            // committed (as the other backends do).
            if (!rest.isEmpty()) {
                if ("earliest".equals(cmd.path("reset").asText())) {
                    consumer.seekToBeginning(rest);
                } else {
                    consumer.seekToEnd(rest);
                }
            }
        }

        private void poll(JsonNode cmd, ObjectNode reply) {
            ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(cmd.path("timeout_ms").asLong(1000)));
            ArrayNode out = reply.putArray("records");
            for (ConsumerRecord<byte[], byte[]> r : records) {
                ArrayNode row = out.addArray();
                row.add(r.topic());
                row.add(r.partition());
                row.add(r.offset());
                row.add(b64(r.key()));
                row.add(b64(r.value()));
            }
        }

        private void committed(JsonNode cmd, ObjectNode reply) {
            Set<TopicPartition> tps = new HashSet<>(partitions(cmd.path("partitions")));
            Map<TopicPartition, OffsetAndMetadata> got =
                consumer.committed(tps, Duration.ofMillis(cmd.path("timeout_ms").asLong(10_000)));
            ArrayNode out = reply.putArray("offsets");
            for (TopicPartition tp : tps) {
                OffsetAndMetadata o = got.get(tp);
                ArrayNode row = out.addArray();
                row.add(tp.topic());
                row.add(tp.partition());
                row.add(o == null ? -1L : o.offset());
            }
        }

        @Override
        public void decorate(ObjectNode reply) {
            if (!rebalances.isEmpty()) {
                ArrayNode out = reply.putArray("rebalances");
                for (ObjectNode event : rebalances) {
                    out.add(event);
                }
                rebalances.clear();
            }
        }

        @Override
        @SuppressWarnings("deprecation")  // close(Duration) is deprecated in 4.x but the only form 3.x has
        public void close(Duration timeout) {
            consumer.close(timeout);
        }
    }
}
