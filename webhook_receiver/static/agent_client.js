// The browser side of an agent's token, shared by /agent, /call and /hubspot/widget.
//
// The token never rides in a URL: URLs end up in server and proxy access logs, in the
// browser's history and in Referer headers, where anyone reading them could place calls.
// So every request sends it in the X-Callhook-Agent header, the page removes ?k= from its
// own address once loaded, and the token lives in the page's memory and localStorage.
//
// The card stream is read with fetch() because EventSource cannot send headers. CardStream
// does what EventSource did: it parses text/event-stream, resumes with Last-Event-ID after
// a cut, and reconnects by itself, with an exponential backoff (and the server's
// Retry-After when it sends one) so that a server in trouble is not hammered by every page.
//
// Links expire: TokenKeeper asks POST /agent/token at start and again when the server says
// the token can be renewed (at least daily), and hands the page the fresh token.
"use strict";

const CallhookAgent = (() => {
  const HEADER = "X-Callhook-Agent";
  const DAY_S = 86400;
  const MAX_BACKOFF_MS = 60000;

  function stripTokenFromAddress() {
    const url = new URL(window.location.href);
    if (!url.searchParams.has("k")) return;
    url.searchParams.delete("k");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }

  function authFetch(token, url, options = {}) {
    const headers = Object.assign({}, options.headers || {}, {[HEADER]: token});
    return fetch(url, Object.assign({}, options, {headers, cache: "no-store"}));
  }

  // POST a JSON body with the token; resolves to {response, body} (body {} when not JSON).
  async function postJson(token, url, payload) {
    const response = await authFetch(token, url, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(payload)});
    const body = await response.json().catch(() => ({}));
    return {response, body};
  }

  function retryAfterMs(response) {
    const seconds = Number(response.headers.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
  }

  // Keeps a token fresh. onToken(token) when it changed, onRefused(reason) when the server
  // refused it (expired or revoked: the reason says to ask for a new link).
  class TokenKeeper {
    constructor({token, onToken = () => {}, onRefused = () => {}}) {
      this.token = token;
      this.onToken = onToken;
      this.onRefused = onRefused;
      this.timer = null;
      this.offlineFor = 0;
    }

    // One renewal round trip: {agent} when valid, {refused: reason}, or {offline: true}.
    async check() {
      let response, body;
      try {
        ({response, body} = await postJson(this.token, "/agent/token", {}));
      } catch (error) {
        return {offline: true};
      }
      if (response.status === 403) return {refused: body.reason || "This link is no longer valid: ask for a new one."};
      if (!response.ok || !body.token) return {offline: true};
      if (body.token !== this.token) {
        this.token = body.token;
        this.onToken(body.token);
      }
      return {agent: body.agent, renewInS: body.renew_in_s};
    }

    // check() now, then again when the token becomes renewable, and at least daily.
    async start() {
      this.stop();
      const result = await this.check();
      let delayS;
      if (result.refused) { this.onRefused(result.refused); return result; }
      if (result.offline) {
        this.offlineFor += 1;
        delayS = Math.min(60 * 2 ** (this.offlineFor - 1), 3600);
      } else {
        this.offlineFor = 0;
        delayS = Math.min(Math.max(Number(result.renewInS) || 0, 60), DAY_S);
      }
      this.timer = setTimeout(() => this.start(), delayS * 1000);
      return result;
    }

    stop() {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
    }
  }

  // The agent's card stream. token() gives the token to connect with (read at each
  // (re)connect, so a renewed token is used from the next one on); onEvent(type, data, id),
  // onStatus(text, down), onRefused(reason) when the link is refused for good.
  class CardStream {
    constructor({url = "/agent/stream", token, onEvent, onStatus = () => {}, onRefused = () => {}}) {
      Object.assign(this, {url, token, onEvent, onStatus, onRefused});
      this.lastEventId = null;
      this.retryMs = 3000;
      this.failures = 0;
      this.stopped = true;
      this.controller = null;
      this.wake = null;
    }

    start() {
      if (!this.stopped) return;
      this.stopped = false;
      this.run();
    }

    stop() {
      this.stopped = true;
      if (this.controller) this.controller.abort();
      if (this.wake) this.wake();
    }

    sleep(ms) {
      return new Promise(resolve => {
        const timer = setTimeout(resolve, ms);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
    }

    backoffMs() {
      const base = Math.min(this.retryMs * 2 ** Math.max(this.failures - 1, 0), MAX_BACKOFF_MS);
      return base * (0.8 + Math.random() * 0.4);  // jitter: pages cut together come back apart
    }

    async run() {
      while (!this.stopped) {
        let waitMs = null;
        const used = this.token();
        this.controller = new AbortController();
        try {
          const headers = {Accept: "text/event-stream"};
          if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
          const response = await authFetch(used, this.url, {headers, signal: this.controller.signal});
          if (response.ok) {
            this.onStatus("connected", false);
            const opened = Date.now();
            const verdict = await this.read(response.body.getReader(), used);
            if (verdict === "refused" || this.stopped) return;
            // A stream that lived a while was healthy: start the backoff afresh.
            this.failures = Date.now() - opened > 30000 ? 0 : this.failures + 1;
          } else {
            const body = await response.json().catch(() => ({}));
            if (response.status === 403 && this.refused(used, body.reason)) return;
            this.failures += 1;
            waitMs = retryAfterMs(response);
            this.onStatus(body.reason || `reconnecting… (HTTP ${response.status})`, true);
          }
        } catch (error) {
          if (this.stopped) return;
          this.failures += 1;
        }
        if (this.stopped) return;
        this.onStatus("reconnecting…", true);
        await this.sleep(Math.max(waitMs || 0, this.backoffMs()));
      }
    }

    // The link was refused: give up, unless the page holds a newer token (renewed since
    // this connection began), which the next connection uses.
    refused(used, reason) {
      if (this.token() && this.token() !== used) return false;
      this.stopped = true;
      this.onRefused(reason || "This link is no longer valid: ask for a new one.");
      return true;
    }

    // Reads events until the stream ends; "refused" when the server said the link died.
    async read(reader, used) {
      const decoder = new TextDecoder();
      let buffer = "";
      let type = "", data = [], id = this.lastEventId;
      for (;;) {
        const {value, done} = await reader.read();
        if (done) return "ended";
        buffer += decoder.decode(value, {stream: true});
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const raw of lines) {
          const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
          if (line === "") {  // the end of an event: dispatch it
            this.lastEventId = id;
            if (data.length) {
              const text = data.join("\n");
              if (type === "revoked") {
                let reason;
                try { reason = JSON.parse(text).reason; } catch (error) { reason = null; }
                if (this.refused(used, reason)) { reader.cancel().catch(() => {}); return "refused"; }
                reader.cancel().catch(() => {});
                return "ended";  // a newer token: reconnect with it at once
              }
              this.onEvent(type || "message", text, id);
            }
            type = ""; data = [];
            continue;
          }
          if (line.startsWith(":")) continue;  // a comment: the server's heartbeat
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") type = text;
          else if (field === "data") data.push(text);
          else if (field === "id" && !text.includes("\0")) id = text;
          else if (field === "retry" && /^\d+$/.test(text)) this.retryMs = Number(text);
        }
      }
    }
  }

  return {HEADER, stripTokenFromAddress, authFetch, postJson, TokenKeeper, CardStream};
})();
