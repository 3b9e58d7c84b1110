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
//
// CallhookText (below) holds the pages' words in English and French and formats dates and
// times in the browser's language and time zone.
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

  // GET a JSON answer with the token; resolves to {response, body} (body {} when not JSON).
  async function getJson(token, url) {
    const response = await authFetch(token, url, {headers: {Accept: "application/json"}});
    const body = await response.json().catch(() => ({}));
    return {response, body};
  }

  return {HEADER, stripTokenFromAddress, authFetch, postJson, getJson, TokenKeeper, CardStream};
})();

// The page's words in the browser's language (English, or French when navigator.language
// starts with "fr"), and dates and times in its language and time zone (Intl). Reasons the
// server gives (a refused number, an expired link) stay in English.
const CallhookText = (() => {
  const STRINGS = {
    en: {
      "auto-open": "open the CRM record by itself",
      "notify": "Enable notifications",
      "connecting": "connecting…",
      "connected": "connected",
      "reconnecting": "reconnecting…",
      "signed-out": "signed out",
      "dial-label": "Number to call",
      "dial-button": "Call",
      "calling": "Calling…",
      "dial-offline": "callhook did not answer: the call was not placed.",
      "dial-failed": "The call could not be placed.",
      "now": "Calls now",
      "empty": "No call right now. This page shows who is calling while your phone rings.",
      "missed": "Missed calls to call back",
      "missed-empty": "Nothing to call back.",
      "today": "Today's calls",
      "today-empty": "No calls yet today.",
      "truncated": "Only the latest {n} calls are listed.",
      "lists-offline": "The lists could not be loaded; retrying.",
      "state-ringing": "Incoming call",
      "state-answered": "On the call",
      "state-withdrawn": "Answered by a colleague",
      "state-ended": "Call ended",
      "company": "Company",
      "owner": "Owner",
      "deal": "Open deal",
      "last-call": "Last call",
      "open-record": "Open in HubSpot",
      "call-back": "Call back",
      "call-back-who": "Call back {who}",
      "call": "Call",
      "call-number": "Call {who}",
      "create-contact": "Create contact",
      "creating": "Creating…",
      "created": "Contact created",
      "created-dry-run": "Contact created (dry run: not sent to HubSpot)",
      "hubspot-silent": "HubSpot did not answer",
      "unknown-caller": "Unknown caller",
      "incoming": "Incoming call: {who}",
      "call-ended": "Call ended: {who}",
      "wrap-up": "After the call",
      "wrap-open": "Outcome and note",
      "wrap-edit": "Edit outcome and note",
      "note-add": "Add note",
      "note-edit": "Edit note",
      "outcome": "Outcome",
      "outcome-none": "Choose an outcome",
      "note": "Note",
      "save": "Save",
      "saving": "Saving…",
      "saved": "Saved: the HubSpot call is updated in a moment.",
      "saved-dry-run": "Saved (dry run: not sent to HubSpot).",
      "not-saved": "Not saved: {reason}",
      "save-offline": "callhook did not answer: not saved.",
      "dismiss": "Close",
      "wrapped": "Outcome: {outcome}",
      "noted": "Note: {note}",
      "missed-at": "Missed at {time}",
      "missed-count": "{n} missed calls, last at {time}",
      "tried-at": "called back at {time}, no answer",
      "no-link": "Open your personal callhook link (ask your admin for it) to see your calls here.",
      "dir-inbound": "Inbound",
      "dir-outbound": "Outbound",
      "dir-internal": "Internal",
      "out-answered": "Answered",
      "out-no_answer": "No answer",
      "out-busy": "Busy",
      "out-failed": "Failed",
      "out-canceled": "Caller hung up",
      "out-voicemail": "Voicemail",
      "live": "In progress",
    },
    fr: {
      "auto-open": "ouvrir la fiche CRM automatiquement",
      "notify": "Activer les notifications",
      "connecting": "connexion…",
      "connected": "connecté",
      "reconnecting": "reconnexion…",
      "signed-out": "déconnecté",
      "dial-label": "Numéro à appeler",
      "dial-button": "Appeler",
      "calling": "Appel en cours…",
      "dial-offline": "callhook n'a pas répondu : l'appel n'a pas été passé.",
      "dial-failed": "L'appel n'a pas pu être passé.",
      "now": "Appels en cours",
      "empty": "Aucun appel pour l'instant. Cette page montre qui appelle pendant que votre téléphone sonne.",
      "missed": "Appels manqués à rappeler",
      "missed-empty": "Personne à rappeler.",
      "today": "Appels du jour",
      "today-empty": "Aucun appel aujourd'hui pour l'instant.",
      "truncated": "Seuls les {n} derniers appels sont affichés.",
      "lists-offline": "Les listes n'ont pas pu être chargées ; nouvel essai bientôt.",
      "state-ringing": "Appel entrant",
      "state-answered": "En ligne",
      "state-withdrawn": "Pris par un collègue",
      "state-ended": "Appel terminé",
      "company": "Entreprise",
      "owner": "Propriétaire",
      "deal": "Transaction ouverte",
      "last-call": "Dernier appel",
      "open-record": "Ouvrir dans HubSpot",
      "call-back": "Rappeler",
      "call-back-who": "Rappeler {who}",
      "call": "Appeler",
      "call-number": "Appeler {who}",
      "create-contact": "Créer le contact",
      "creating": "Création…",
      "created": "Contact créé",
      "created-dry-run": "Contact créé (essai à blanc : rien n'a été envoyé à HubSpot)",
      "hubspot-silent": "HubSpot n'a pas répondu",
      "unknown-caller": "Appelant inconnu",
      "incoming": "Appel entrant : {who}",
      "call-ended": "Appel terminé : {who}",
      "wrap-up": "Après l'appel",
      "wrap-open": "Résultat et note",
      "wrap-edit": "Modifier le résultat et la note",
      "note-add": "Ajouter une note",
      "note-edit": "Modifier la note",
      "outcome": "Résultat",
      "outcome-none": "Choisir un résultat",
      "note": "Note",
      "save": "Enregistrer",
      "saving": "Enregistrement…",
      "saved": "Enregistré : l'appel HubSpot est mis à jour dans un instant.",
      "saved-dry-run": "Enregistré (essai à blanc : rien n'a été envoyé à HubSpot).",
      "not-saved": "Non enregistré : {reason}",
      "save-offline": "callhook n'a pas répondu : non enregistré.",
      "dismiss": "Fermer",
      "wrapped": "Résultat : {outcome}",
      "noted": "Note : {note}",
      "missed-at": "Manqué à {time}",
      "missed-count": "{n} appels manqués, le dernier à {time}",
      "tried-at": "rappelé à {time}, sans réponse",
      "no-link": "Ouvrez votre lien callhook personnel (demandez-le à votre administrateur) pour voir vos appels ici.",
      "dir-inbound": "Entrant",
      "dir-outbound": "Sortant",
      "dir-internal": "Interne",
      "out-answered": "Répondu",
      "out-no_answer": "Sans réponse",
      "out-busy": "Occupé",
      "out-failed": "Échec",
      "out-canceled": "L'appelant a raccroché",
      "out-voicemail": "Messagerie",
      "live": "En cours",
    },
  };
  // HubSpot's default call outcomes, as HubSpot's French interface names them; names an
  // admin wrote in mappings/hubspot.yaml are shown as written.
  const OUTCOME_NAMES = {
    fr: {
      "Connected": "Connecté", "Busy": "Occupé", "No answer": "Pas de réponse",
      "Left voicemail": "Message vocal laissé", "Left live message": "Message laissé",
      "Wrong number": "Mauvais numéro",
    },
  };
  const locale = navigator.language || "en";
  const lang = locale.toLowerCase().startsWith("fr") ? "fr" : "en";
  const time = new Intl.DateTimeFormat(locale, {hour: "numeric", minute: "2-digit"});
  const dateTime = new Intl.DateTimeFormat(locale, {dateStyle: "medium", timeStyle: "short"});
  const number = new Intl.NumberFormat(locale);

  function t(key, vars = {}) {
    const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  // Puts the words of the page's static parts in the browser's language: data-i18n sets
  // the text, data-i18n-placeholder and data-i18n-label the placeholder and aria-label.
  function apply(root = document) {
    document.documentElement.lang = lang;
    root.querySelectorAll("[data-i18n]").forEach(node => { node.textContent = t(node.dataset.i18n); });
    root.querySelectorAll("[data-i18n-placeholder]").forEach(node => { node.placeholder = t(node.dataset.i18nPlaceholder); });
    root.querySelectorAll("[data-i18n-label]").forEach(node => { node.setAttribute("aria-label", t(node.dataset.i18nLabel)); });
  }

  return {
    lang, t, apply,
    time: iso => time.format(new Date(iso)),
    dateTime: iso => dateTime.format(new Date(iso)),
    number: value => number.format(Number(value)),
    outcomeName: name => (OUTCOME_NAMES[lang] || {})[name] || name,
    // YYYY-MM-DD of today in the browser's time zone, and that zone's name.
    today: () => {
      const now = new Date();
      const pad = n => String(n).padStart(2, "0");
      return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
    },
    zone: () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  };
})();
