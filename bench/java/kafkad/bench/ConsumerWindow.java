package kafkad.bench;

import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerInterceptor;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * Times ConsumerPerformance from inside its consumer ({@code interceptor.classes}): each poll's
 * records pass through here just before the tool gets them. The window closes when the poll that
 * holds the N-th record returns; the tool then only adds up that poll's record sizes (at most
 * {@code max.poll.records}, 500), which is left out. Closing the consumer prints the window.
 */
public final class ConsumerWindow implements ConsumerInterceptor<byte[], byte[]> {
    private Window window;

    @Override
    public void configure(Map<String, ?> configs) {
        window = new Window(configs);
    }

    @Override
    public ConsumerRecords<byte[], byte[]> onConsume(ConsumerRecords<byte[], byte[]> records) {
        window.add(records.count());
        return records;
    }

    @Override
    public void onCommit(Map<TopicPartition, OffsetAndMetadata> offsets) {
    }

    @Override
    public void close() {
        window.report(false);
    }
}
