// The producer thread: one idempotent kafkajs producer (acks=all), fed packs of records by the
// consuming thread (see thread.ts for why). It decides nothing: every send is answered with
// sent or failed, and retrying is the consuming thread's business.
import { loadKafkaSecurity } from '../../config-security.js';
import { createLogger } from '../../observe/logger.js';
import { toThreadError } from '../../threads/error.js';
import { threadPort } from '../../threads/port.js';
import { DECISION_PRODUCER, createKafka } from '../kafka.js';
import { unpackRecords } from '../records.js';
import type { FromProducer, ProducerInit, ToProducer } from './messages.js';

const thread = threadPort<ProducerInit, ToProducer, FromProducer>('the producer thread');
const { init, post, port } = thread;

const logger = createLogger({ level: init.logLevel, write: (line) => post({ type: 'log', line }) });

/** A Kafka error without a `retriable` flag is worth another try. */
const wire = (err: unknown) => toThreadError(err, true);

// The main thread validated these settings already; read again here, files included.
const kafka = createKafka({ brokers: init.brokers, clientId: init.clientId, kafkaSecurity: loadKafkaSecurity(init.security) }, logger);
const producer = kafka.producer(DECISION_PRODUCER);

let closing = false;

thread.onMessage((m) => {
  if (m.type === 'send') {
    if (closing) {
      post({ type: 'failed', id: m.id, error: { name: 'ProducerThreadClosing', message: 'the producer thread is closing', retriable: true } });
      return;
    }
    let topicMessages;
    try {
      topicMessages = unpackRecords(m.buffer, m.length, init.topics);
    } catch (err) {
      post({ type: 'failed', id: m.id, error: { ...wire(err), retriable: false } });
      return;
    }
    producer.sendBatch({ topicMessages, acks: -1 }).then(
      () => post({ type: 'sent', id: m.id }),
      (err: unknown) => post({ type: 'failed', id: m.id, error: wire(err) }),
    );
  } else if (m.type === 'close') {
    closing = true;
    producer
      .disconnect()
      .catch((err: unknown) => logger.warn('producer disconnect failed', { err }))
      .finally(() => {
        post({ type: 'closed' });
        port.close();
      });
  }
});

producer.connect().then(
  () => post({ type: 'ready' }),
  (err: unknown) => {
    thread.startFailed(err, true);
    port.close();
  },
);
