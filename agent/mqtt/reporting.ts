/**
 * How health and commands reach the broker through a link, apart from where
 * they come from: the bridge feeds it the controller's streams, the fleet
 * simulator (test/fleet/) a synthetic model, so a simulated box talks to the
 * broker through the very code a real one runs.
 */
import type { Logger } from 'pino';
import type { StreamHealth } from '../health/types.js';
import type { CommandRouter, CommandRouterOptions } from './command-router.js';
import type { MqttLink } from './link.js';
import type { Topics } from './topics.js';

/**
 * Per stream: a watermark change becomes a `watermark` event, a new set of stuck buffers a `ledger`
 * event, and a change of health level sends telemetry at once rather than at the next interval.
 */
export class StreamHealthReporter {
  private readonly levels = new Map<string, string>();
  private readonly watermarks = new Map<string, string>();
  private readonly stuck = new Map<string, string>();

  constructor(
    private readonly link: Pick<MqttLink, 'publishEvent'>,
    private readonly publishTelemetryNow: () => void,
  ) {}

  report(health: StreamHealth): void {
    const { stream } = health;
    const previousWatermark = this.watermarks.get(stream) ?? null;
    if (previousWatermark !== health.watermark) {
      this.watermarks.set(stream, health.watermark);
      this.link.publishEvent('watermark', {
        stream,
        from: previousWatermark,
        to: health.watermark,
        level: health.level,
        reasons: health.reasons,
        atMs: health.atMs,
      });
    }
    const stuckKey = health.anomalies.map((a) => `${a.index}:${a.owner}`).join(',');
    if (stuckKey !== (this.stuck.get(stream) ?? '')) {
      this.stuck.set(stream, stuckKey);
      if (health.anomalies.length) {
        this.link.publishEvent('ledger', { stream, anomalies: health.anomalies, atMs: health.atMs });
      }
    }
    // A change of level is news now, not at the next interval.
    if (this.levels.get(stream) !== health.level) {
      this.levels.set(stream, health.level);
      this.publishTelemetryNow();
    }
  }
}

/** The router's outputs on the link: answers, `command-rejected` events, the fallback response topic, logs. */
export function routerPublishing(
  link: Pick<MqttLink, 'publishEvent' | 'publishResponse'>,
  topics: Topics,
  logger: Logger,
): Pick<CommandRouterOptions, 'respond' | 'onRejected' | 'defaultResponseTopic' | 'onInternalError'> {
  return {
    respond: (target, answer) => link.publishResponse(target.topic, answer, target.correlationData),
    onRejected: (rejection) => {
      logger.warn({ module: 'mqtt', rejection }, `command ${rejection.name} rejected: ${rejection.code}`);
      link.publishEvent('command-rejected', {
        name: rejection.name,
        id: rejection.id,
        code: rejection.code,
        message: rejection.message,
        atMs: Date.now(),
      });
    },
    defaultResponseTopic: (name) => topics.response(name),
    onInternalError: (err, what) => logger.error({ module: 'mqtt', err }, `command router: ${what}`),
  };
}

/** Hands every `cmd/<name>` message the link receives to the router, with its MQTT 5 response properties. */
export function routeCommands(link: Pick<MqttLink, 'onCommand'>, router: Pick<CommandRouter, 'handle'>): void {
  link.onCommand((name, payload, packet) =>
    router.handle(name, payload, {
      ...(packet.properties?.responseTopic ? { responseTopic: packet.properties.responseTopic } : {}),
      ...(packet.properties?.correlationData ? { correlationData: packet.properties.correlationData } : {}),
    }),
  );
}
