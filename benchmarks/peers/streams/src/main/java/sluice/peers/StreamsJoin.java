package sluice.peers;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of Sluice's click-enrichment (issue #13): clicks left-joined with a GlobalKTable of the
 * compacted profiles topic. The global store is bootstrapped to the end of the profiles topic before the stream
 * thread processes a click, as Sluice's table strategy is loaded before the topology starts.
 *
 * Each enriched record is what Sluice writes: key = the user id as text, value = {timestamp, user_id, url,
 * user_name, user_city} as JSON (nulls for an unknown user), and the headers sluice.click.source
 * ("partition:offset" of the click) and sluice.click.produced-at (the click's record timestamp), so one verifier
 * checks every contender.
 *
 * Configuration, from the environment (the harness benchmarks/peers/run.ts sets it):
 * BROKERS, PROFILES, CLICKS, OUTPUT (topics), APP_ID (application.id = consumer group), STATE_DIR,
 * STORE (rocksdb, the default GlobalKTable store, or memory), COMMIT_INTERVAL_MS (default 1000).
 */
public final class StreamsJoin {
  static {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", env("LOG_LEVEL", "warn"));
  }

  public record Profile(long id, String name, String city) {}

  public record Click(Number timestamp, long user_id, String url) {}

  public record Enriched(Number timestamp, long user_id, String url, String user_name, String user_city) {}

  static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  static <T> Serde<T> json(Class<T> type) {
    Serializer<T> ser = (topic, value) -> {
      if (value == null) return null;
      try {
        return JSON.writeValueAsBytes(value);
      } catch (IOException e) {
        throw new RuntimeException(e);
      }
    };
    Deserializer<T> de = (topic, bytes) -> {
      if (bytes == null) return null;
      try {
        return JSON.readValue(bytes, type);
      } catch (IOException e) {
        throw new RuntimeException(e);
      }
    };
    return Serdes.serdeFrom(ser, de);
  }

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  static String required(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println("streams-join: " + name + " is not set");
      System.exit(2);
    }
    return v;
  }

  /** Adds Sluice's headers: where the click came from and its record timestamp. */
  static final class SourceHeaders implements FixedKeyProcessor<String, Enriched, Enriched> {
    private FixedKeyProcessorContext<String, Enriched> context;

    @Override
    public void init(FixedKeyProcessorContext<String, Enriched> context) {
      this.context = context;
    }

    @Override
    public void process(FixedKeyRecord<String, Enriched> record) {
      var meta = context.recordMetadata().orElseThrow();
      record.headers().add("sluice.click.source",
          (meta.partition() + ":" + meta.offset()).getBytes(StandardCharsets.UTF_8));
      record.headers().add("sluice.click.produced-at",
          Long.toString(record.timestamp()).getBytes(StandardCharsets.UTF_8));
      context.forward(record);
    }
  }

  public static void main(String[] args) throws Exception {
    String profilesTopic = required("PROFILES");
    String clicksTopic = required("CLICKS");
    String outputTopic = required("OUTPUT");
    String store = env("STORE", "rocksdb");

    Serde<Profile> profileSerde = json(Profile.class);
    Serde<Click> clickSerde = json(Click.class);
    Serde<Enriched> enrichedSerde = json(Enriched.class);

    StreamsBuilder builder = new StreamsBuilder();
    Consumed<String, Profile> profilesConsumed = Consumed.with(Serdes.String(), profileSerde);
    GlobalKTable<String, Profile> profiles;
    if (store.equals("memory")) {
      profiles = builder.globalTable(profilesTopic, profilesConsumed,
          Materialized.<String, Profile>as(Stores.inMemoryKeyValueStore("profiles"))
              .withKeySerde(Serdes.String()).withValueSerde(profileSerde));
    } else {
      profiles = builder.globalTable(profilesTopic, profilesConsumed,
          Materialized.<String, Profile, KeyValueStore<Bytes, byte[]>>as("profiles")
              .withKeySerde(Serdes.String()).withValueSerde(profileSerde));
    }

    builder.stream(clicksTopic, Consumed.with(Serdes.String(), clickSerde))
        .leftJoin(profiles,
            (key, click) -> Long.toString(click.user_id()),
            (click, profile) -> new Enriched(click.timestamp(), click.user_id(), click.url(),
                profile == null ? null : profile.name(), profile == null ? null : profile.city()))
        .processValues(SourceHeaders::new)
        .to(outputTopic, Produced.with(Serdes.String(), enrichedSerde));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, required("APP_ID"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BROKERS", "127.0.0.1:9092"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, required("STATE_DIR"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, env("COMMIT_INTERVAL_MS", "1000"));
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, env("THREADS", "1"));
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("streams-join: " + e);
      stopped.countDown();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
          .SHUTDOWN_CLIENT;
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(10));
      stopped.countDown();
    }));
    streams.start();
    System.err.println("streams-join: started (" + store + " global store) " + clicksTopic + " + "
        + profilesTopic + " -> " + outputTopic);
    stopped.await();
  }
}
