// A Java Kafka client exercise for tests/broker/clients/test_java_clients.py, run as a single-file
// source program with the Kafka jars on the class path (no build step):
//
//   java --source 17 -cp '<kafka jars>/*' ClientCheck.java group BOOTSTRAP TOPIC GROUP COUNT
//
// "group": an idempotent producer (acks=all) sends COUNT keyed records, paced over a few seconds,
// while a consumer group rebalances around it: members c1, c2 and c3 join one after the other
// (each join waits, through the Admin client, for a Stable group with every member assigned), c1
// leaves, c4 joins; the group then drains the topic and every member closes cleanly. Each member
// commits synchronously after every batch, so every record must be consumed exactly once overall.
//
// Output: lines "KEY value" for the test to parse; the exit status is 0 only when every check
// passed (the failures are printed as "FAIL ...").

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClientCheck {
    static final List<String> failures = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        if (args.length != 5 || !args[0].equals("group")) {
            System.err.println("usage: ClientCheck group BOOTSTRAP TOPIC GROUP COUNT");
            System.exit(2);
        }
        try {
            group(args[1], args[2], args[3], Integer.parseInt(args[4]));
        } catch (Throwable t) {  // exit at once: the producer and member threads would keep the JVM up
            t.printStackTrace(System.out);
            check(false, "ClientCheck failed: " + t);
        }
        for (String failure : failures) {
            System.out.println("FAIL " + failure);
        }
        System.out.flush();
        System.exit(failures.isEmpty() ? 0 : 1);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            synchronized (failures) {
                failures.add(what);
            }
        }
    }

    static String value(int i) {
        return "value-" + i;
    }

    // ------------------------------------------------------------------------------------------
    // group: idempotent producer + a rebalancing consumer group, exactly once overall

    static void group(String bootstrap, String topic, String groupId, int count) throws Exception {
        Map<String, AtomicInteger> seen = new ConcurrentHashMap<>();
        AtomicInteger consumed = new AtomicInteger();
        AtomicReference<Throwable> producerError = new AtomicReference<>();
        Map<String, Long> produced = new ConcurrentHashMap<>();  // value -> offset key "p:o"

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        // The producer: COUNT records over about 4 s, so the rebalances happen while data flows.
        Thread producerThread = new Thread(() -> {
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                List<java.util.concurrent.Future<RecordMetadata>> futures = new ArrayList<>();
                long start = System.nanoTime();
                for (int i = 0; i < count; i++) {
                    futures.add(producer.send(new ProducerRecord<>(topic, "k" + i, value(i))));
                    long due = start + TimeUnit.MILLISECONDS.toNanos(4000L * (i + 1) / count);
                    long wait = due - System.nanoTime();
                    if (wait > 0) {
                        Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                    }
                }
                producer.flush();
                for (int i = 0; i < count; i++) {
                    RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
                    produced.put(md.partition() + ":" + md.offset(), (long) i);
                }
            } catch (Throwable t) {
                producerError.set(t);
            }
        }, "producer");
        producerThread.setDaemon(true);

        Map<String, Member> members = new TreeMap<>();
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            producerThread.start();
            for (String name : List.of("c1", "c2", "c3")) {
                members.put(name, Member.start(name, bootstrap, topic, groupId, seen, consumed));
                awaitStable(admin, groupId, members.size());
            }
            members.get("c1").close();
            awaitStable(admin, groupId, 2);
            members.put("c4", Member.start("c4", bootstrap, topic, groupId, seen, consumed));
            awaitStable(admin, groupId, 3);

            producerThread.join(60_000);
            check(!producerThread.isAlive(), "producer did not finish in 60 s");
            if (producerError.get() != null) {
                producerError.get().printStackTrace(System.out);
                check(false, "producer failed: " + producerError.get());
            }
            long deadline = System.currentTimeMillis() + 30_000;
            while (consumed.get() < count && System.currentTimeMillis() < deadline) {
                Thread.sleep(50);
            }
            Thread.sleep(500);  // let any duplicate show up before the members close
            for (Member member : members.values()) {
                member.close();
            }
            ConsumerGroupDescription after = admin.describeConsumerGroups(List.of(groupId))
                .all().get(30, TimeUnit.SECONDS).get(groupId);
            System.out.println("FINAL_STATE " + after.groupState() + " members=" + after.members().size());
            check(after.members().isEmpty(), "members left after every consumer closed: " + after.members());
        }

        // Verify: every produced record consumed exactly once, nothing else consumed.
        int duplicates = 0;
        int missing = 0;
        for (Map.Entry<String, AtomicInteger> e : seen.entrySet()) {
            if (e.getValue().get() > 1) {
                duplicates++;
                if (duplicates <= 10) {
                    System.out.println("DUPLICATE " + e.getKey() + " x" + e.getValue().get());
                }
            }
        }
        Set<String> offsets = new TreeSet<>();
        for (String key : seen.keySet()) {
            offsets.add(key.substring(0, key.indexOf(' ')));
        }
        for (String offset : produced.keySet()) {
            if (!offsets.contains(offset)) {
                missing++;
                if (missing <= 10) {
                    System.out.println("MISSING " + offset);
                }
            }
        }
        for (String key : seen.keySet()) {
            String[] parts = key.split(" ", 3);  // "p:o kN value-N"
            Long i = produced.get(parts[0]);
            check(i != null && parts[1].equals("k" + i) && parts[2].equals(value(i.intValue())),
                "record " + key + " does not match what was produced there (" + i + ")");
        }
        System.out.println("PRODUCED " + produced.size());
        System.out.println("CONSUMED " + consumed.get());
        System.out.println("DISTINCT " + seen.size());
        System.out.println("DUPLICATES " + duplicates);
        System.out.println("MISSING " + missing);
        for (Member member : members.values()) {
            System.out.println("MEMBER " + member.name + " records=" + member.records.get()
                + " assignments=" + member.assignments.get() + " revocations=" + member.revocations.get()
                + " errors=" + member.errors);
            check(member.errors.isEmpty(), member.name + " failed: " + member.errors);
            check(member.assignments.get() >= 1, member.name + " was never assigned partitions");
        }
        check(produced.size() == count, "produced " + produced.size() + " of " + count);
        check(consumed.get() == count, "consumed " + consumed.get() + " records for " + count + " produced");
        check(duplicates == 0 && missing == 0, duplicates + " duplicates, " + missing + " missing");
        check(members.get("c2").assignments.get() >= 3,
            "c2 saw " + members.get("c2").assignments.get() + " assignments; c3 joining, c1 leaving and c4 joining should each rebalance it");
    }

    /** Waits (through the Admin client) for a Stable group of n members, each assigned a partition. */
    static void awaitStable(Admin admin, String groupId, int n) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        String last = "";
        while (System.currentTimeMillis() < deadline) {
            ConsumerGroupDescription d;
            try {
                d = admin.describeConsumerGroups(List.of(groupId)).all().get(30, TimeUnit.SECONDS).get(groupId);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof GroupIdNotFoundException)) {
                    throw e;
                }
                last = "the group does not exist yet";  // the first member has not joined yet
                Thread.sleep(100);
                continue;
            }
            Collection<MemberDescription> ms = d.members();
            boolean assigned = ms.stream().allMatch(m -> !m.assignment().topicPartitions().isEmpty());
            Set<TopicPartition> all = new TreeSet<>((a, b) -> a.toString().compareTo(b.toString()));
            int total = 0;
            for (MemberDescription m : ms) {
                all.addAll(m.assignment().topicPartitions());
                total += m.assignment().topicPartitions().size();
            }
            last = d.groupState() + " members=" + ms.size() + " partitions=" + all.size() + "/" + total
                + " protocol=" + d.partitionAssignor();
            if (d.groupState() == GroupState.STABLE && ms.size() == n && assigned && total == all.size()) {
                System.out.println("STABLE " + last);
                return;
            }
            Thread.sleep(100);
        }
        check(false, "group " + groupId + " never became Stable with " + n + " members; last: " + last);
        throw new IllegalStateException(String.join("; ", failures));
    }

    /** One consumer group member on its own thread; commits after each batch and on revocation. */
    static final class Member implements Runnable {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final String topic;
        final Map<String, AtomicInteger> seen;
        final AtomicInteger consumed;
        final AtomicBoolean running = new AtomicBoolean(true);
        final AtomicInteger records = new AtomicInteger();
        final AtomicInteger assignments = new AtomicInteger();
        final AtomicInteger revocations = new AtomicInteger();
        final List<String> errors = new ArrayList<>();
        final Thread thread;

        Member(String name, String bootstrap, String topic, String groupId,
               Map<String, AtomicInteger> seen, AtomicInteger consumed) {
            this.name = name;
            this.topic = topic;
            this.seen = seen;
            this.consumed = consumed;
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
            cp.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
            cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            this.consumer = new KafkaConsumer<>(cp);
            this.thread = new Thread(this, name);
            this.thread.setDaemon(true);
        }

        static Member start(String name, String bootstrap, String topic, String groupId,
                            Map<String, AtomicInteger> seen, AtomicInteger consumed) {
            Member member = new Member(name, bootstrap, topic, groupId, seen, consumed);
            member.thread.start();
            return member;
        }

        @Override
        public void run() {
            try {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        revocations.incrementAndGet();
                        if (!partitions.isEmpty()) {
                            consumer.commitSync();
                        }
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        if (!partitions.isEmpty()) {
                            assignments.incrementAndGet();
                        }
                        System.out.println("ASSIGNED " + name + " " + new TreeSet<>(
                            partitions.stream().map(TopicPartition::partition).toList()));
                    }
                });
                while (running.get()) {
                    ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : batch) {
                        String key = r.partition() + ":" + r.offset() + " " + r.key() + " " + r.value();
                        seen.computeIfAbsent(key, k -> new AtomicInteger()).incrementAndGet();
                        records.incrementAndGet();
                        consumed.incrementAndGet();
                    }
                    if (!batch.isEmpty()) {
                        consumer.commitSync();
                    }
                }
                consumer.commitSync();
            } catch (Throwable t) {
                t.printStackTrace(System.out);
                synchronized (errors) {
                    errors.add(t.toString());
                }
            } finally {
                consumer.close();  // leaves the group: the others rebalance at once
            }
        }

        void close() throws InterruptedException {
            running.set(false);
            thread.join(30_000);
            check(!thread.isAlive(), name + " did not close in 30 s");
        }
    }
}
