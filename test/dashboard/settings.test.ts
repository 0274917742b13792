// Where the page finds its broker, and what it refuses.
import { describe, expect, it } from 'vitest';
import { resolveSettings, STORAGE_KEY, saveSettings } from '../../deploy/dashboard/src/settings.js';

function memory(initial: Record<string, string> = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (key: string) => data.get(key) ?? null,
    setItem: (key: string, value: string) => void data.set(key, value),
    removeItem: (key: string) => void data.delete(key),
  };
}

const page = { protocol: 'http:', host: '127.0.0.1:8083', search: '' };

describe('dashboard settings', () => {
  it('defaults to MQTT over WebSocket on the page’s own origin (the development broker)', () => {
    const resolved = resolveSettings({ location: page, storage: memory(), session: memory(), deployed: null });
    expect(resolved.settings).toMatchObject({ brokerUrl: 'ws://127.0.0.1:8083/mqtt', topicPrefix: 'stb' });
    expect(resolved.source).toBe('the page origin');
    const secure = resolveSettings({
      location: { ...page, protocol: 'https:', host: 'ops.example' },
      storage: null,
      session: null,
      deployed: null,
    });
    expect(secure.settings.brokerUrl).toBe('wss://ops.example/mqtt');
  });

  it('takes the address bar over saved settings over config.json', () => {
    const deployed = { brokerUrl: 'wss://fleet.example:8884/mqtt', topicPrefix: 'eu', commandTtlSec: 30 };
    const storage = memory({ [STORAGE_KEY]: JSON.stringify({ brokerUrl: 'wss://saved.example/mqtt' }) });
    const both = resolveSettings({
      location: { ...page, search: '?broker=ws%3A%2F%2F10.0.0.1%3A9001&prefix=lab' },
      storage,
      session: memory(),
      deployed,
    });
    expect(both.settings).toMatchObject({ brokerUrl: 'ws://10.0.0.1:9001', topicPrefix: 'lab', commandTtlSec: 30 });
    expect(both.source).toBe('address bar');
    const saved = resolveSettings({ location: page, storage, session: memory(), deployed });
    expect(saved.settings).toMatchObject({ brokerUrl: 'wss://saved.example/mqtt', topicPrefix: 'eu' });
    expect(saved.source).toBe('saved in this browser');
    const file = resolveSettings({ location: page, storage: memory(), session: memory(), deployed });
    expect(file.source).toBe('config.json');
  });

  it('refuses what cannot work, and says so', () => {
    const resolved = resolveSettings({
      location: { ...page, search: '?broker=mqtt%3A%2F%2Fbroker%3A1883&prefix=stb%2F%2B' },
      storage: memory({ [STORAGE_KEY]: '{not json' }),
      session: memory(),
      deployed: { brokerUrl: 'http://x', topicPrefix: '$SYS', commandTtlSec: -1 },
    });
    expect(resolved.settings).toMatchObject({
      brokerUrl: 'ws://127.0.0.1:8083/mqtt',
      topicPrefix: 'stb',
      commandTtlSec: 120,
    });
    expect(resolved.problems).toEqual([
      '?broker= ignored: a browser reaches MQTT over WebSocket only: use ws:// or wss://, not mqtt://',
      "?prefix= ignored: the topic prefix must not contain '+' or '#'",
      'the saved settings were unreadable and are ignored',
    ]);
  });

  it('saves everything but the password, which stays with the tab', () => {
    const storage = memory();
    const session = memory();
    saveSettings(
      { brokerUrl: 'wss://b/mqtt', topicPrefix: 'stb', username: 'ops', password: 's3cret', commandTtlSec: 60 },
      storage,
      session,
    );
    expect(storage.data.get(STORAGE_KEY)).not.toContain('s3cret');
    const resolved = resolveSettings({ location: page, storage, session, deployed: null });
    expect(resolved.settings).toMatchObject({ brokerUrl: 'wss://b/mqtt', username: 'ops', password: 's3cret' });
    saveSettings({ ...resolved.settings, password: '' }, storage, session);
    expect(session.data.size).toBe(0);
  });
});

describe('dashboard credentials', () => {
  it('never sends the saved credentials to a broker that only a link names', () => {
    const storage = memory({
      [STORAGE_KEY]: JSON.stringify({ brokerUrl: 'wss://fleet.example/mqtt', username: 'operator' }),
    });
    const session = memory({ 'dmx-dashboard.password': 'hunter2' });
    const elsewhere = resolveSettings({
      location: { ...page, search: `?broker=${encodeURIComponent('wss://evil.example/mqtt')}` },
      storage,
      session,
      deployed: null,
    });
    expect(elsewhere.settings).toMatchObject({ brokerUrl: 'wss://evil.example/mqtt', username: '', password: '' });
    expect(elsewhere.problems).toEqual([
      'the address bar names the broker wss://evil.example/mqtt: connecting to it without your saved credentials (open Settings to use them there)',
    ]);
    // A link to the broker they were saved for keeps them.
    const same = resolveSettings({
      location: { ...page, search: `?broker=${encodeURIComponent('wss://fleet.example/mqtt')}&prefix=eu` },
      storage,
      session,
      deployed: null,
    });
    expect(same.settings).toMatchObject({ username: 'operator', password: 'hunter2', topicPrefix: 'eu' });
    expect(same.problems).toEqual([]);
  });
});
