package kafkad.bench;

import java.util.Map;
import org.apache.kafka.clients.producer.ProducerInterceptor;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;

/**
 * Times ProducerPerformance from inside its producer ({@code interceptor.classes}): every
 * acknowledgement passes through here on the client's I/O thread, before the tool's own
 * callback. The tool closes its producer once every record is acknowledged; closing prints the
 * window.
 */
public final class ProducerWindow implements ProducerInterceptor<byte[], byte[]> {
    private Window window;

    @Override
    public void configure(Map<String, ?> configs) {
        window = new Window(configs);
    }

    @Override
    public ProducerRecord<byte[], byte[]> onSend(ProducerRecord<byte[], byte[]> record) {
        return record;
    }

    @Override
    public void onAcknowledgement(RecordMetadata metadata, Exception exception) {
        if (exception == null) {
            window.add(1);
        } else {
            window.fail();
        }
    }

    @Override
    public void close() {
        window.report(true);
    }
}
