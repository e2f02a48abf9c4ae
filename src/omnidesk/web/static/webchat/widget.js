/*
 * omnidesk web chat widget.
 *
 * Embed on any page of an allowed origin:
 *   <script src="https://desk.example.com/webchat/<channel>/widget.js" async></script>
 *
 * Plain JavaScript, no dependencies, no build step. It draws a launcher button
 * and a chat panel inside a shadow root (the host page's CSS cannot reach it),
 * keeps the visitor's signed token in localStorage, sends messages with POST,
 * receives replies over Server-Sent Events and confirms the ones it displayed.
 * Every piece of text is set with textContent: nothing typed by a visitor or an
 * agent is ever parsed as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.src) return;
  var base = script.src.replace(/\/widget\.js(?:[?#].*)?$/, "");
  var registry = (window.__omnideskWebchat = window.__omnideskWebchat || {});
  if (registry[base]) return; // embedded twice
  var KEY = "omnidesk-webchat:" + base;

  // -- storage (localStorage may be blocked: fall back to memory) -----------
  var memory = {};
  function load(name) {
    try {
      var v = window.localStorage.getItem(KEY + ":" + name);
      return v === null ? memory[name] || null : v;
    } catch (e) {
      return memory[name] || null;
    }
  }
  function save(name, value) {
    memory[name] = value;
    try {
      if (value === null) window.localStorage.removeItem(KEY + ":" + name);
      else window.localStorage.setItem(KEY + ":" + name, value);
    } catch (e) {
      /* memory only */
    }
  }

  var state = {
    cfg: null,
    token: load("token"),
    profile: JSON.parse(load("profile") || "{}"),
    open: false,
    stream: null,
    backoff: 1000,
    reconnectTimer: null,
    maxOutId: 0,
    unread: 0,
    unreadIds: {}, // replies shown while the panel was closed or hidden
    bubbles: {}, // "in:<client id>" | "out:<message id>" -> element
    receipts: { delivered: {}, read: {} },
    receiptTimer: null,
    receiptTries: {},
  };

  function newId() {
    if (window.crypto && window.crypto.getRandomValues) {
      var a = new Uint8Array(16);
      window.crypto.getRandomValues(a);
      return Array.prototype.map
        .call(a, function (b) {
          return ("0" + b.toString(16)).slice(-2);
        })
        .join("");
    }
    return (Date.now().toString(36) + Math.random().toString(36).slice(2)).slice(0, 32);
  }

  // -- HTTP -----------------------------------------------------------------
  function api(method, path, body) {
    var headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.token) headers["Authorization"] = "Bearer " + state.token;
    return fetch(base + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    }).then(function (resp) {
      return resp
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          return {
            status: resp.status,
            data: data,
            retryAfter: parseInt(resp.headers.get("Retry-After") || "0", 10) || 0,
          };
        });
    });
  }

  function forgetToken() {
    state.token = null;
    save("token", null);
    if (state.stream) state.stream.close();
    state.stream = null;
  }

  function ensureToken() {
    if (state.token) return Promise.resolve(state.token);
    return api("POST", "/session", {}).then(function (r) {
      if (r.status !== 200 || !r.data.token) throw new Error(r.data.error || "no session");
      state.token = r.data.token;
      save("token", state.token);
      return state.token;
    });
  }

  // -- DOM ------------------------------------------------------------------
  var host = document.createElement("div");
  host.id = "omnidesk-webchat";
  var root = host.attachShadow({ mode: "open" });
  var css =
    ":host{all:initial}" +
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
    "#od-launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;" +
    "border:0;background:var(--od-color);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);" +
    "z-index:2147483000;display:flex;align-items:center;justify-content:center}" +
    "#od-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;" +
    "background:#d1242f;color:#fff;font-size:12px;line-height:20px;padding:0 5px}" +
    "#od-panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 24px);" +
    "height:520px;max-height:calc(100vh - 110px);background:#fff;color:#1f2328;border-radius:12px;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden;" +
    "z-index:2147483000}" +
    "#od-panel[hidden]{display:none}" +
    "header{background:var(--od-color);color:#fff;padding:12px 14px;display:flex;align-items:center}" +
    "header h2{flex:1;margin:0;font-size:16px;font-weight:600}" +
    "header button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}" +
    "#od-log{flex:1;overflow-y:auto;padding:12px;background:#f6f8fa}" +
    ".od-msg{max-width:80%;margin:6px 0;padding:8px 11px;border-radius:12px;white-space:pre-wrap;" +
    "word-wrap:break-word;overflow-wrap:anywhere;font-size:14px;line-height:1.4}" +
    ".od-out{background:#fff;border:1px solid #d0d7de;margin-right:auto}" +
    ".od-in{background:var(--od-color);color:#fff;margin-left:auto}" +
    ".od-meta{display:block;font-size:11px;opacity:.7;margin-top:3px}" +
    "#od-typing{font-size:12px;opacity:.75;padding:2px 14px;font-style:italic}" +
    ".od-link{background:none;border:0;color:var(--od-color);font-size:12px;cursor:pointer;padding:2px 14px;text-align:left}" +
    ".od-attach{background:none;border:0;font-size:20px;cursor:pointer;padding:0 4px}" +
    ".od-agent{display:flex;align-items:center;gap:6px;font-size:12px;font-weight:600;margin-bottom:3px}" +
    ".od-avatar{display:inline-flex;align-items:center;justify-content:center;width:22px;height:22px;" +
    "border-radius:50%;background:var(--od-color);color:#fff;font-size:11px;font-weight:700}" +
    "#od-panel.od-offline #od-profile{border:1px solid var(--od-color)}" +
    ".od-failed{background:#ffebe9;color:#82071e;border:1px solid #ff8182;cursor:pointer}" +
    ".od-survey{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 8px}" +
    ".od-survey button{flex:1 1 auto;min-width:34px;padding:6px 8px;border:1px solid var(--od-color);" +
    "border-radius:8px;background:#fff;color:var(--od-color);cursor:pointer;font-size:13px}" +
    ".od-survey button:disabled{opacity:.45;cursor:default}" +
    ".od-survey button.od-chosen{background:var(--od-color);color:#fff;opacity:1}" +
    ".od-survey.od-rating{flex-direction:column;max-width:80%}" +
    ".od-survey.od-rating button{text-align:left}" +
    "#od-profile{padding:8px 12px;border-top:1px solid #d0d7de;font-size:13px}" +
    "#od-profile[hidden]{display:none}" +
    "#od-code{padding:8px 12px;border-top:1px solid #d0d7de;font-size:13px}" +
    "#od-code[hidden],#od-typing[hidden],#od-transcript[hidden]{display:none}" +
    "#od-code input{width:100%;margin:3px 0;padding:6px;border:1px solid #d0d7de;border-radius:6px}" +
    "#od-profile input{width:100%;margin:3px 0;padding:6px;border:1px solid #d0d7de;border-radius:6px}" +
    "#od-profile button{margin-top:3px}" +
    "#od-notice{font-size:12px;color:#82071e;padding:0 12px}" +
    ".od-files{display:flex;flex-direction:column;gap:4px;margin-top:4px}" +
    ".od-file{color:inherit;font-size:13px;text-decoration:underline;word-break:break-all}" +
    ".od-file img{display:block;max-width:100%;max-height:160px;border-radius:6px;margin-bottom:2px}" +
    "form#od-compose{display:flex;gap:6px;padding:8px;border-top:1px solid #d0d7de}" +
    "textarea{flex:1;resize:none;height:42px;padding:8px;border:1px solid #d0d7de;border-radius:8px;" +
    "font-size:14px}" +
    "button.od-primary{background:var(--od-color);color:#fff;border:0;border-radius:8px;padding:0 14px;" +
    "cursor:pointer;font-size:14px}";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      e.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var style = el("style");
  style.textContent = css;
  var launcher = el("button", { id: "od-launcher", type: "button", "aria-expanded": "false" });
  // A speech-bubble icon drawn as SVG (no icon font, no emoji font needed).
  var SVG = "http://www.w3.org/2000/svg"; // the SVG namespace name, never fetched
  var icon = document.createElementNS(SVG, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("width", "28");
  icon.setAttribute("height", "28");
  icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute(
    "d",
    "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"
  );
  icon.appendChild(path);
  launcher.appendChild(icon);
  var badge = el("span", { id: "od-badge", hidden: "" });
  launcher.appendChild(badge);
  var panel = el("section", { id: "od-panel", role: "dialog", hidden: "" });
  var header = el("header");
  var title = el("h2", { id: "od-title" });
  var closeBtn = el("button", { type: "button", "aria-label": "Close chat" }, "\u00D7");
  header.appendChild(title);
  header.appendChild(closeBtn);
  var log = el("div", { id: "od-log", role: "log", "aria-live": "polite" });
  var profile = el("div", { id: "od-profile", hidden: "" });
  var profileNote = el("div", {}, "Leave your name and e-mail in case we need to follow up:");
  var nameInput = el("input", { id: "od-name", type: "text", autocomplete: "name", placeholder: "Name", maxlength: "100" });
  var emailInput = el("input", { id: "od-email", type: "email", autocomplete: "email", placeholder: "E-mail" });
  var profileSave = el("button", { id: "od-profile-save", type: "button", class: "od-primary" }, "Save");
  [profileNote, nameInput, emailInput, profileSave].forEach(function (c) {
    profile.appendChild(c);
  });
  var notice = el("div", { id: "od-notice", role: "status" });
  var typingLine = el("div", { id: "od-typing", "aria-live": "polite", hidden: "" });
  var transcriptBtn = el("button", { id: "od-transcript", type: "button", class: "od-link", hidden: "" }, "E-mail me this conversation");
  var form = el("form", { id: "od-compose" });
  var input = el("textarea", { id: "od-input", "aria-label": "Message", placeholder: "Write a message\u2026" });
  var sendBtn = el("button", { id: "od-send", type: "submit", class: "od-primary" }, "Send");
  var fileInput = el("input", { id: "od-file", type: "file", hidden: "", "aria-hidden": "true" });
  var attachBtn = el("button", { id: "od-attach", type: "button", class: "od-attach", "aria-label": "Attach a file", title: "Attach a file" }, "\uD83D\uDCCE");
  form.appendChild(fileInput);
  form.appendChild(attachBtn);
  form.appendChild(input);
  form.appendChild(sendBtn);
  [header, log, typingLine, transcriptBtn, profile, notice, form].forEach(function (c) {
    panel.appendChild(c);
  });
  [style, panel, launcher].forEach(function (c) {
    root.appendChild(c);
  });

  // Typing, both ways: an agent's shows here for a few seconds; the
  // visitor's is told to the desk at most every three seconds.
  var typingTimer = null;
  var lastTypingSent = 0;
  function showTyping(data) {
    clearTimeout(typingTimer);
    if (!data) {
      typingLine.hidden = true;
      return;
    }
    typingLine.textContent = (data.name || "We") + " is typing\u2026";
    typingLine.hidden = false;
    typingTimer = setTimeout(function () {
      typingLine.hidden = true;
    }, ((data.ttl || 6) * 1000));
  }
  function visitorTyping() {
    var now = Date.now();
    if (!state.token || now - lastTypingSent < 3000) return;
    lastTypingSent = now;
    api("POST", "/typing", {}).catch(function () {});
  }

  function setNotice(text) {
    notice.textContent = text || "";
  }

  function timeOf(at) {
    var d = new Date(at * 1000);
    if (typeof at !== "number" || isNaN(d.getTime())) return "";
    try {
      return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return "";
    }
  }

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  // The agent who answered: their name and an avatar of their initials.
  function agentLine(name) {
    var line = el("span", { class: "od-agent" });
    var initials = name
      .split(/\s+/)
      .filter(Boolean)
      .slice(0, 2)
      .map(function (w) {
        return w.charAt(0).toUpperCase();
      })
      .join("");
    line.appendChild(el("span", { class: "od-avatar", "aria-hidden": "true" }, initials || "?"));
    line.appendChild(el("span", { class: "od-agent-name" }, name));
    return line;
  }

  function bubble(key, direction, text, meta, agent) {
    var stick = atBottom();
    var b = state.bubbles[key];
    if (!b) {
      b = el("div", { class: "od-msg " + (direction === "in" ? "od-in" : "od-out") });
      if (agent) b.appendChild(agentLine(agent));
      b.dataset.key = key;
      b.appendChild(el("span", { class: "od-text" }, text));
      b.appendChild(el("span", { class: "od-meta" }));
      state.bubbles[key] = b;
      log.appendChild(b);
    }
    b.querySelector(".od-meta").textContent = meta || "";
    if (stick || direction === "in") log.scrollTop = log.scrollHeight;
    return b;
  }

  // -- receipts -------------------------------------------------------------
  function queueReceipt(kind, id) {
    state.receipts[kind][id] = true;
    if (!state.receiptTimer) state.receiptTimer = setTimeout(flushReceipts, 250);
  }

  function flushReceipts() {
    state.receiptTimer = null;
    var delivered = Object.keys(state.receipts.delivered).map(Number);
    var read = Object.keys(state.receipts.read).map(Number);
    state.receipts = { delivered: {}, read: {} };
    if (!state.token || (!delivered.length && !read.length)) return;
    api("POST", "/receipts", { delivered: delivered, read: read })
      .then(function (r) {
        // Replies not yet recorded as sent on the server: ask again shortly.
        (r.data.pending || []).forEach(function (id) {
          var n = (state.receiptTries[id] = (state.receiptTries[id] || 0) + 1);
          if (n > 5) return;
          if (delivered.indexOf(id) >= 0) state.receipts.delivered[id] = true;
          if (read.indexOf(id) >= 0) state.receipts.read[id] = true;
        });
        if (!state.receiptTimer && (r.data.pending || []).length)
          state.receiptTimer = setTimeout(flushReceipts, 1500);
      })
      .catch(function () {
        /* receipts are best effort */
      });
  }

  function visible() {
    return state.open && document.visibilityState === "visible";
  }

  // -- messages -------------------------------------------------------------
  function showMessage(m) {
    if (m.direction === "in") {
      var key = "in:" + (m.client_id || "id" + m.id);
      var b = bubble(key, "in", m.text, timeOf(m.at));
      b.classList.remove("od-failed");
      return;
    }
    if (typeof m.id !== "number") return;
    var known = !!state.bubbles["out:" + m.id];
    // A survey question with buttons needs no "1 = ..., reply with a number".
    var ob = bubble("out:" + m.id, "out", (m.survey && m.survey.question) || m.text, timeOf(m.at), m.agent);
    if (m.survey && !known) surveyButtons(ob, m.survey);
    if (m.files && m.files.length && !ob.querySelector(".od-files")) agentFiles(ob, m.files);
    if (m.id > state.maxOutId) state.maxOutId = m.id;
    if (m.state === "sent") queueReceipt("delivered", m.id);
    if (m.state !== "read") {
      if (visible()) {
        queueReceipt("read", m.id);
      } else {
        state.unreadIds[m.id] = true;
        if (!known) {
          state.unread += 1;
          renderBadge();
        }
      }
    }
  }

  // An agent's files: an image inline, anything else a download link, each
  // from the link the desk signed for this visitor (no token needed in it).
  function fileSize(n) {
    return n < 1024 ? n + " B" : n < 1048576 ? Math.ceil(n / 1024) + " KB" : (n / 1048576).toFixed(1) + " MB";
  }

  function agentFiles(b, files) {
    var stick = atBottom();
    var box = el("div", { class: "od-files" });
    files.forEach(function (f) {
      if (typeof f.url !== "string" || f.url.charAt(0) !== "/") return;
      var url = base + f.url;
      var a = el("a", { class: "od-file", href: url, target: "_blank", rel: "noopener noreferrer", download: f.name });
      if (f.image) {
        var img = el("img", { src: url, alt: f.name, loading: "lazy" });
        img.addEventListener("load", function () {
          // The picture grew the log: keep the newest message in view.
          if (stick) log.scrollTop = log.scrollHeight;
        });
        a.appendChild(img);
      }
      a.appendChild(el("span", {}, f.name + " (" + fileSize(f.size || 0) + ")"));
      box.appendChild(a);
    });
    b.insertBefore(box, b.querySelector(".od-meta"));
    if (stick) log.scrollTop = log.scrollHeight;
  }

  // A satisfaction survey: its choices as buttons under the question; a
  // click sends the number as the visitor's answer (the server takes it as
  // the rating), and the buttons close.
  function surveyButtons(after, survey) {
    var stick = atBottom();
    var row = el("div", { class: "od-survey" + (survey.stage === "rating" ? " od-rating" : ""), role: "group" });
    var choices = (survey.choices || []).slice();
    if (survey.stage === "rating") choices.reverse(); // best first
    choices.forEach(function (c) {
      var btn = el("button", { type: "button", "data-value": String(c.value), title: c.label }, String(c.value) + (c.label !== String(c.value) ? " \u00b7 " + c.label : ""));
      btn.addEventListener("click", function () {
        Array.prototype.forEach.call(row.querySelectorAll("button"), function (x) {
          x.disabled = true;
        });
        btn.classList.add("od-chosen");
        sendText(String(c.value), newId(), false);
      });
      row.appendChild(btn);
    });
    log.insertBefore(row, after.nextSibling);
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function renderBadge() {
    if (state.unread > 0 && !state.open) {
      badge.textContent = String(state.unread);
      badge.hidden = false;
    } else {
      badge.hidden = true;
    }
  }

  function markRead() {
    var ids = Object.keys(state.unreadIds);
    state.unreadIds = {};
    ids.forEach(function (id) {
      queueReceipt("read", Number(id));
    });
    state.unread = 0;
    renderBadge();
  }

  function loadHistory() {
    return api("GET", "/messages").then(function (r) {
      if (r.status === 401) {
        forgetToken();
        return false;
      }
      (r.data.messages || []).forEach(showMessage);
      return r.status === 200;
    });
  }

  function scheduleReconnect() {
    if (state.reconnectTimer) return;
    var wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 60000);
    state.reconnectTimer = setTimeout(function () {
      state.reconnectTimer = null;
      connect();
    }, wait);
  }

  function openStream() {
    if (state.stream || !state.token || typeof EventSource === "undefined") return;
    var url =
      base + "/events?token=" + encodeURIComponent(state.token) + "&after=" + state.maxOutId;
    var es = new EventSource(url);
    state.stream = es;
    es.onopen = function () {
      state.backoff = 1000;
    };
    es.onmessage = function (ev) {
      var data;
      try {
        data = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (data.type === "message") {
        showMessage(data);
        if (data.direction === "out") showTyping(null);
      } else if (data.type === "typing") showTyping(data);
    };
    es.onerror = function () {
      // The browser retries a dropped stream by itself; a refused one
      // (expired token, shutdown) is closed: start over after a pause.
      if (es.readyState === 2) {
        state.stream = null;
        scheduleReconnect();
      }
    };
  }

  function connect() {
    if (!state.token) return Promise.resolve();
    return loadHistory()
      .then(function (ok) {
        if (ok) openStream();
      })
      .catch(function () {
        scheduleReconnect();
      });
  }

  function sendText(text, clientId, retried) {
    var b = bubble("in:" + clientId, "in", text, "sending\u2026");
    b.classList.remove("od-failed");
    b.onclick = null;
    return ensureToken()
      .then(function () {
        return api("POST", "/messages", {
          client_id: clientId,
          text: text,
          page: location.origin + location.pathname,
          name: state.profile.name || undefined,
          offline: state.offline || undefined,
        });
      })
      .then(function (r) {
        if (r.status === 202) {
          b.querySelector(".od-meta").textContent = timeOf(Date.now() / 1000);
          setNotice("");
          openStream();
          return;
        }
        if (r.status === 401 && !retried) {
          forgetToken();
          return sendText(text, clientId, true);
        }
        if (r.status === 429) {
          var secs = r.retryAfter || 5;
          setNotice("You are sending messages quickly; sending again in " + secs + " s.");
          b.querySelector(".od-meta").textContent = "waiting\u2026";
          setTimeout(function () {
            sendText(text, clientId, retried);
          }, secs * 1000);
          return;
        }
        failed(b, text, clientId, r.data.error || "not sent");
      })
      .catch(function () {
        failed(b, text, clientId, "not sent: no connection");
      });
  }

  function failed(b, text, clientId, why) {
    b.classList.add("od-failed");
    b.querySelector(".od-meta").textContent = why + " \u2013 tap to retry";
    b.onclick = function () {
      sendText(text, clientId, false);
    };
  }

  // -- opening and closing ----------------------------------------------------
  function setOpen(open) {
    state.open = open;
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    try {
      window.sessionStorage.setItem(KEY + ":open", open ? "1" : "0");
    } catch (e) {
      /* not remembered */
    }
    if (open) {
      markRead();
      log.scrollTop = log.scrollHeight;
      input.focus();
    }
    renderBadge();
  }

  launcher.addEventListener("click", function () {
    setOpen(!state.open);
  });
  closeBtn.addEventListener("click", function () {
    setOpen(false);
  });
  panel.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") setOpen(false);
  });
  document.addEventListener("visibilitychange", function () {
    if (visible()) markRead();
  });
  input.addEventListener("input", visitorTyping);
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    }
  });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var max = (state.cfg && state.cfg.max_message_chars) || 4000;
    if (text.length > max) {
      setNotice("That message is too long (at most " + max + " characters).");
      return;
    }
    if (state.offline && !state.profile.email) {
      // Offline: the message becomes a conversation we answer by e-mail,
      // so the e-mail comes first.
      var email = emailInput.value.trim();
      if (!email) {
        setNotice("Please leave your e-mail so we can answer you.");
        emailInput.focus();
        return;
      }
      saveProfile().then(function (ok) {
        if (!ok) return;
        input.value = "";
        sendText(text, newId(), false).then(function () {
          setNotice("Thanks! We are offline now and will answer by e-mail to " + state.profile.email + ".");
        });
      });
      return;
    }
    input.value = "";
    sendText(text, newId(), false);
  });
  profileSave.addEventListener("click", function () {
    saveProfile();
  });

  // -- confirming a known e-mail ---------------------------------------------------
  // The address belongs to an earlier customer: a code went there; typed
  // back here, it links this chat to their history.
  var codeBox = el("div", { id: "od-code", hidden: "" });
  var codeNote = el("div", {});
  var codeInput = el("input", { id: "od-code-input", type: "text", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "6", placeholder: "6-digit code" });
  var codeBtn = el("button", { id: "od-code-send", type: "button", class: "od-primary" }, "Confirm");
  [codeNote, codeInput, codeBtn].forEach(function (c) {
    codeBox.appendChild(c);
  });
  panel.insertBefore(codeBox, notice);
  var pendingConfirm = null;
  function askCode(token, email) {
    pendingConfirm = token;
    codeNote.textContent = "We know " + email + " from before: we sent a code there. Type it to see this chat with your earlier conversations.";
    codeBox.hidden = false;
  }
  codeBtn.addEventListener("click", function () {
    var code = codeInput.value.trim();
    if (!code || !pendingConfirm) return;
    api("POST", "/confirm", { confirm: pendingConfirm, code: code })
      .then(function (r) {
        if (r.status === 200) {
          codeBox.hidden = true;
          pendingConfirm = null;
          setNotice("Thanks, your e-mail is confirmed.");
        } else setNotice(r.data.error || "could not confirm");
      })
      .catch(function () {
        setNotice("could not confirm: no connection");
      });
  });

  // -- transcript -------------------------------------------------------------
  transcriptBtn.addEventListener("click", function () {
    var email = state.profile.email || emailInput.value.trim();
    if (!email) {
      profile.hidden = false;
      setNotice("Leave your e-mail above, then ask again.");
      emailInput.focus();
      return;
    }
    ensureToken()
      .then(function () {
        return api("POST", "/transcript", { email: email });
      })
      .then(function (r) {
        setNotice(r.status === 200 ? "The conversation was sent to " + email + "." : r.data.error || "could not send it");
      })
      .catch(function () {
        setNotice("could not send it: no connection");
      });
  });

  // -- files ------------------------------------------------------------------
  // Checked here against the desk's limits first (type, size); the desk
  // checks again, and refuses what does not match its declared type.
  attachBtn.addEventListener("click", function () {
    fileInput.value = "";
    fileInput.click();
  });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    if (!file) return;
    var lim = (state.cfg && state.cfg.attachments) || { max_kb: 0, types: [] };
    var type = (file.type || "").toLowerCase();
    if (lim.types.indexOf(type) < 0) {
      setNotice("Sorry, files of this type cannot be sent here (" + (type || "unknown type") + ").");
      return;
    }
    if (file.size > lim.max_kb * 1024) {
      setNotice("Sorry, that file is too big: at most " + lim.max_kb + " KB.");
      return;
    }
    sendFile(file, newId());
  });

  function sendFile(file, clientId) {
    var b = bubble("in:" + clientId, "in", "Attachment: " + file.name, "sending\u2026");
    return ensureToken()
      .then(function () {
        var q = "?client_id=" + encodeURIComponent(clientId) + "&filename=" + encodeURIComponent(file.name);
        return fetch(base + "/attachments" + q, {
          method: "POST",
          headers: { "Content-Type": file.type, Authorization: "Bearer " + state.token },
          body: file,
          credentials: "omit",
          cache: "no-store",
        });
      })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          if (resp.status === 202) {
            b.querySelector(".od-meta").textContent = timeOf(Date.now() / 1000);
            setNotice("");
            openStream();
            return;
          }
          b.classList.add("od-failed");
          b.querySelector(".od-meta").textContent = "not sent";
          setNotice(data.error || "could not send the file");
        });
      })
      .catch(function () {
        b.classList.add("od-failed");
        setNotice("could not send the file: no connection");
      });
  }

  // Name and e-mail to the server (POST /identify); resolves to whether it worked.
  function saveProfile() {
    var name = nameInput.value.trim();
    var email = emailInput.value.trim();
    if (!name && !email) return Promise.resolve(false);
    return ensureToken()
      .then(function () {
        return api("POST", "/identify", { name: name || undefined, email: email || undefined });
      })
      .then(function (r) {
        if (r.status !== 200) {
          setNotice(r.data.error || "could not save");
          return false;
        }
        state.profile = { name: r.data.name || "", email: r.data.email || "" };
        save("profile", JSON.stringify(state.profile));
        profile.hidden = true;
        setNotice("");
        if (r.data.confirm) askCode(r.data.confirm, r.data.email);
        openStream();
        return true;
      })
      .catch(function () {
        setNotice("could not save: no connection");
        return false;
      });
  }

  // -- start ------------------------------------------------------------------
  function start(cfg) {
    state.cfg = cfg;
    host.style.setProperty("--od-color", /^#[0-9a-fA-F]{6}$/.test(cfg.color) ? cfg.color : "#1f6feb");
    title.textContent = cfg.title || "Chat";
    panel.setAttribute("aria-label", cfg.title || "Chat");
    launcher.setAttribute("aria-label", "Open " + (cfg.title || "chat"));
    input.setAttribute("maxlength", String(cfg.max_message_chars || 4000));
    if (cfg.greeting) bubble("greeting", "out", cfg.greeting, "");
    if (cfg.ask_email && !state.profile.email) profile.hidden = false;
    if (cfg.transcript) transcriptBtn.hidden = false;
    if (cfg.agents_online === false) {
      // Nobody can answer now: an offline form (name, e-mail, message).
      state.offline = true;
      panel.classList.add("od-offline");
      profileNote.textContent = "We are offline right now. Leave your e-mail and your message: we will answer by e-mail.";
      profileSave.hidden = true;
      if (!state.profile.email) profile.hidden = false;
      sendBtn.textContent = "Send";
      input.setAttribute("placeholder", "Your message\u2026");
    }
    (document.body || document.documentElement).appendChild(host);
    var wasOpen = false;
    try {
      wasOpen = window.sessionStorage.getItem(KEY + ":open") === "1";
    } catch (e) {
      /* closed */
    }
    if (state.token) {
      // Refresh the token (it expires after a long absence) and pick up
      // replies that came while the visitor was away.
      api("POST", "/session", { token: state.token })
        .then(function (r) {
          if (r.status === 200 && r.data.token) {
            state.token = r.data.token;
            save("token", state.token);
          }
        })
        .catch(function () {})
        .then(connect);
    }
    if (wasOpen) setOpen(true);
  }

  registry[base] = {
    open: function () {
      setOpen(true);
    },
    close: function () {
      setOpen(false);
    },
  };

  function init() {
    api("GET", "/config")
      .then(function (r) {
        if (r.status !== 200) throw new Error(r.data.error || "config " + r.status);
        start(r.data);
      })
      .catch(function (err) {
        if (window.console) console.warn("omnidesk webchat: not started:", err);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
