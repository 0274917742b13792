/** Boots the page: settings, the contract's validators, the store, the connection, the view. */
import { render } from 'preact';
import { CommandClient, DEFAULT_COMMAND_OPTIONS } from './commands.js';
import { BrokerConnection } from './connection.js';
import { fleetSubscriptions } from './contract.js';
import { FleetStore } from './fleet-store.js';
import { contractCheck } from './schemas.js';
import { resolveSettings } from './settings.js';
import { App } from './views/App.js';

/** config.json beside the page, when the deployment put one there. */
async function deployedConfig(): Promise<unknown> {
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

function storage(kind: 'localStorage' | 'sessionStorage'): Storage | null {
  try {
    return window[kind];
  } catch {
    // Storage disabled by the browser's privacy settings: nothing is saved.
    return null;
  }
}

async function main(): Promise<void> {
  const resolved = resolveSettings({
    location,
    storage: storage('localStorage'),
    session: storage('sessionStorage'),
    deployed: await deployedConfig(),
  });
  const { settings } = resolved;
  const session = Math.random().toString(36).slice(2, 10);
  let commands: CommandClient | null = null;
  const store = new FleetStore(settings.topicPrefix, contractCheck(), (deviceId, name, json) =>
    commands?.handleResponse(deviceId, name, json),
  );
  const connection = new BrokerConnection(
    {
      url: settings.brokerUrl,
      ...(settings.username ? { username: settings.username } : {}),
      ...(settings.password ? { password: settings.password } : {}),
      clientId: `dmx-dashboard-${session}`,
    },
    (topic, payload, correlation) => store.ingest(topic, payload, Date.now(), correlation),
  );
  commands = new CommandClient(connection, settings.topicPrefix, session, {
    ...DEFAULT_COMMAND_OPTIONS,
    ttlSec: settings.commandTtlSec,
  });
  for (const filter of fleetSubscriptions(settings.topicPrefix)) void connection.subscribe(filter, 0);
  connection.start();
  const root = document.getElementById('app');
  if (root === null) throw new Error('index.html has no #app element');
  render(<App store={store} commands={commands} connection={connection} settings={resolved} />, root);
}

void main();
