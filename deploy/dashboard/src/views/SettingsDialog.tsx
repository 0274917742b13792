/** Where the page connects: saved in this browser; a reload applies it. */
import { useState } from 'preact/hooks';
import { brokerUrlProblem, type ResolvedSettings, STORAGE_KEY, saveSettings, topicPrefixProblem } from '../settings.js';

export function SettingsDialog(props: { resolved: ResolvedSettings; onClose: () => void }) {
  const current = props.resolved.settings;
  const [brokerUrl, setBrokerUrl] = useState(current.brokerUrl);
  const [topicPrefix, setTopicPrefix] = useState(current.topicPrefix);
  const [username, setUsername] = useState(current.username);
  const [password, setPassword] = useState(current.password);
  const [problem, setProblem] = useState<string | null>(null);

  const save = (e: Event) => {
    e.preventDefault();
    const why = brokerUrlProblem(brokerUrl.trim()) ?? topicPrefixProblem(topicPrefix.trim());
    setProblem(why);
    if (why !== null) return;
    saveSettings(
      { ...current, brokerUrl: brokerUrl.trim(), topicPrefix: topicPrefix.trim(), username, password },
      localStorage,
      sessionStorage,
    );
    // The address bar wins over saved settings: drop ?broker= and ?prefix= so what was saved applies.
    location.replace(`${location.pathname}${location.hash}`);
  };
  const forget = () => {
    localStorage.removeItem(STORAGE_KEY);
    location.replace(`${location.pathname}${location.hash}`);
  };

  return (
    <div class="modal-backdrop">
      <form class="modal" aria-label="settings" onSubmit={save}>
        <h2>Settings</h2>
        <p class="muted">Now from {props.resolved.source}.</p>
        <label>
          Broker (MQTT over WebSocket)
          <input
            name="brokerUrl"
            value={brokerUrl}
            placeholder="wss://broker.example:8884/mqtt"
            onInput={(e) => setBrokerUrl((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          Topic prefix (the agents' mqtt.topicPrefix)
          <input
            name="topicPrefix"
            value={topicPrefix}
            onInput={(e) => setTopicPrefix((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          User name (empty with client certificates)
          <input
            name="username"
            value={username}
            onInput={(e) => setUsername((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          Password (kept for this tab only)
          <input
            name="password"
            type="password"
            value={password}
            onInput={(e) => setPassword((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        {problem ? <p class="warn">{problem}</p> : null}
        <div class="modal-buttons">
          <button type="submit">Save and reconnect</button>
          <button type="button" onClick={forget}>
            Forget saved settings
          </button>
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
