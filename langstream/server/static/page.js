// langstream live page: follows one run over Server-Sent Events.
// Plain JS, no dependencies. RUN_KEY is set by the server before this script.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  // State the page renders from; exposed read-only-ish for tests and debugging.
  var state = {
    lastSeq: 0,        // seq of the last event received, whatever its method
    received: 0,       // events received (each once)
    duplicates: 0,     // events received twice (must stay 0)
    reconnects: 0,     // times the connection dropped and was re-established
    ended: false,
    status: "running", // completed / failed / interrupted once ended
    missed: 0,         // events the server reported as trimmed away
    connection: "connecting",
    es: null
  };
  window.langstream = state;

  var messages = new Map();   // model call id -> {el, tokens, text node, reasoning node}
  var ignoredCalls = new Set();
  var treeNodes = new Map();  // namespace path -> {li, status, children}
  var valuesDepth = Infinity;

  $("run-key").textContent = RUN_KEY;
  var base = location.pathname.replace(/\/+$/, "") + "/events";
  var filters = new URLSearchParams(location.search);
  filters.delete("after");
  // Every method event arrives as an unnamed SSE "message" (its method is in
  // the data): an EventSource dispatches a named event only to a listener of
  // that name, and custom:<name> or a transformer's own method cannot be
  // listed in advance.  So every event counts for the last seq and for resume.
  filters.set("event", "message");

  function eventsUrl(after) {
    var q = new URLSearchParams(filters);
    if (after > 0) { q.set("after", String(after)); }
    var s = q.toString();
    return base + (s ? "?" + s : "");
  }

  function setConn(s) {
    state.connection = s;
    var el = $("conn");
    el.dataset.state = s;
    el.textContent = s;
  }

  function problem(text) {
    var el = $("problem");
    el.hidden = !text;
    el.textContent = text || "";
  }

  // -- wire decoding -----------------------------------------------------
  // The wire JSON tags what JSON cannot hold as {"__ls__": kind, ...}
  // (langstream.wire); the page turns tags back into plain values to show.
  function plain(x) {
    if (Array.isArray(x)) { return x.map(plain); }
    if (!x || typeof x !== "object") { return x; }
    var tag = x.__ls__;
    if (typeof tag === "string") {
      if (tag === "tuple") { return plain(x.v); }
      if (tag === "dict") {
        var d = {};
        (x.v || []).forEach(function (kv) { d[String(plain(kv[0]))] = plain(kv[1]); });
        return d;
      }
      if (tag === "float") { return x.v === "nan" ? NaN : x.v === "-inf" ? -Infinity : Infinity; }
      if (tag === "interrupt") { return { value: plain(x.value), id: x.id }; }
      if (tag === "lc") { return lcPlain(x.v); }
    }
    var out = {};
    Object.keys(x).forEach(function (k) { out[k] = plain(x[k]); });
    return out;
  }

  // langchain's dumpd form of a message: {"lc": 1, "type": "constructor",
  // "id": [..., "AIMessage"], "kwargs": {...}} -> {"type": "AIMessage", ...kwargs}
  function lcPlain(v) {
    if (v && v.type === "constructor" && Array.isArray(v.id)) {
      var out = { type: v.id[v.id.length - 1] };
      var kw = plain(v.kwargs || {});
      Object.keys(kw).forEach(function (k) { out[k] = kw[k]; });
      return out;
    }
    return plain(v);
  }

  function pair(x) {
    x = plain(x);
    return Array.isArray(x) && x.length === 2 ? x : null;
  }

  // -- renderers ---------------------------------------------------------
  // One text node per model call, grown with appendData: a span per token
  // made layout the main thread's bottleneck at 1,000 tokens/s.
  function messageBox(id, ns, node) {
    var m = messages.get(id);
    if (m) { return m; }
    var el = document.createElement("div");
    el.className = "message";
    el.dataset.call = id;
    el.dataset.done = "false";
    el.dataset.tokens = "0";
    var meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = (ns.length ? ns.join(" / ") + " · " : "") + (node || "model");
    var reasoning = document.createElement("span");
    reasoning.className = "reasoning";
    var text = document.createElement("span");
    text.className = "text";
    el.appendChild(meta);
    el.appendChild(reasoning);
    el.appendChild(text);
    $("messages").appendChild(el);
    m = { el: el, tokens: 0, text: null, reasoning: null, textEl: text, reasoningEl: reasoning };
    messages.set(id, m);
    return m;
  }

  function appendTo(m, which, value) {
    if (!m[which]) {
      m[which] = document.createTextNode("");
      m[which + "El"].appendChild(m[which]);
    }
    m[which].appendData(value);
  }

  function onMessages(ev, seq) {
    var p = pair(ev.data);
    if (!p) { return; }
    var payload = p[0], meta = p[1] || {};
    if (!payload || typeof payload !== "object" || typeof payload.event !== "string") { return; }
    var id = String(meta.run_id || payload.id || payload.message_id || (ev.ns || []).join("/"));
    var kind = payload.event;
    if (kind === "message-start" && payload.role === "tool") { ignoredCalls.add(id); return; }
    if (ignoredCalls.has(id)) {
      if (kind === "message-finish") { ignoredCalls.delete(id); }
      return;
    }
    var m = messageBox(id, ev.ns || [], meta.langgraph_node);
    if (kind === "content-block-delta") {
      var d = payload.delta;
      if (!d && payload.content_block && payload.content_block.type === "text") {
        d = { type: "text-delta", text: payload.content_block.text };
      }
      if (!d) { return; }
      var text = d.type === "text-delta" ? d.text : d.type === "reasoning-delta" ? d.reasoning : null;
      if (typeof text !== "string" || !text) { return; }
      appendTo(m, d.type === "text-delta" ? "text" : "reasoning", text);
      m.tokens += 1;
      m.el.dataset.tokens = String(m.tokens);
      m.el.dataset.lastSeq = String(seq);
    } else if (kind === "message-finish") {
      m.el.dataset.done = "true";
    }
  }

  function onLifecycle(ev) {
    var d = plain(ev.data) || {};
    var ns = Array.isArray(d.namespace) ? d.namespace : [];
    if (!ns.length) { return; }
    var path = ns.join("/");
    var node = treeNodes.get(path);
    if (!node) {
      var li = document.createElement("li");
      li.dataset.ns = path;
      var name = document.createElement("span");
      name.className = "name";
      name.textContent = d.graph_name || String(ns[ns.length - 1]).split(":")[0];
      var st = document.createElement("span");
      st.className = "st";
      var ul = document.createElement("ul");
      li.appendChild(name);
      li.appendChild(st);
      li.appendChild(ul);
      var parent = treeNodes.get(ns.slice(0, -1).join("/"));
      (parent ? parent.children : $("tree")).appendChild(li);
      node = { li: li, status: st, children: ul };
      treeNodes.set(path, node);
    }
    node.status.dataset.status = String(d.event);
    node.status.textContent = String(d.event) + (d.error ? ": " + d.error : "");
  }

  function onValues(ev) {
    var depth = (ev.ns || []).length;
    if (depth > valuesDepth) { return; }
    valuesDepth = depth;
    var v = $("values");
    v.dataset.seq = String(ev.seq);
    v.textContent = JSON.stringify(plain(ev.data), null, 2);
  }

  function onEvent(e) {
    var seq = Number(e.lastEventId);
    if (!(seq > state.lastSeq)) { state.duplicates += 1; return; }
    state.lastSeq = seq;
    state.received += 1;
    $("last-seq").textContent = String(seq);
    var ev;
    try { ev = JSON.parse(e.data); } catch (err) { problem("bad event data at seq " + seq); return; }
    var method = ev && ev.method;
    if (method === "messages") { onMessages(ev, seq); }
    else if (method === "lifecycle") { onLifecycle(ev); }
    else if (method === "values") { onValues(ev); }
  }

  function onEnd(e) {
    var end = {};
    try { end = JSON.parse(e.data); } catch (err) { /* keep {} */ }
    state.ended = true;
    state.status = end.status || "ended";
    var badge = $("run-status");
    badge.dataset.status = state.status;
    var text = state.status;
    if (end.error) { text += ": " + end.error.type + ": " + end.error.message; }
    badge.textContent = text;
    if (Array.isArray(end.interrupts) && end.interrupts.length) {
      var box = $("interrupts");
      box.hidden = false;
      box.textContent = "waiting for input: " + JSON.stringify(plain(end.interrupts), null, 2);
    }
    if (state.es) { state.es.close(); }
    setConn("closed");
  }

  // -- connection --------------------------------------------------------
  function diagnose(url) {
    // EventSource hides the HTTP status; ask once more to show why.
    fetch(url, { headers: { "Accept": "application/json" } }).then(function (r) {
      if (r.ok) { if (r.body) { r.body.cancel(); } return null; }
      return r.json().then(function (j) { return "HTTP " + r.status + ": " + (j.error || ""); });
    }).then(function (msg) { if (msg) { problem(msg + " (retrying)"); } }, function () {
      problem("server unreachable (retrying)");
    });
  }

  function connect() {
    if (state.ended) { return; }
    var url = eventsUrl(state.lastSeq);
    var es = new EventSource(url);
    state.es = es;
    es.onopen = function () { setConn("live"); problem(""); };
    es.onerror = function () {
      if (state.ended) { return; }
      if (es.readyState === EventSource.CONNECTING) {
        state.reconnects += 1;
        $("reconnects").textContent = String(state.reconnects);
        setConn("reconnecting");
      } else {
        // Fatal for this EventSource (e.g. a 404 before the run starts):
        // open a new one later, resuming after what we have.
        es.close();
        setConn("waiting");
        diagnose(url);
        setTimeout(connect, 2000);
      }
    };
    es.addEventListener("message", onEvent);
    es.addEventListener("end", onEnd);
    es.addEventListener("lag", function (e) {
      var d = JSON.parse(e.data);
      state.missed += d.missed;
      problem(state.missed + " event(s) were trimmed from the run's history before they could be read");
    });
    es.addEventListener("server-error", function (e) {
      var d = {};
      try { d = JSON.parse(e.data); } catch (err) { /* keep {} */ }
      problem("server: " + (d.error || e.data) + " (retrying)");
      es.close();
      setConn("waiting");
      setTimeout(connect, 2000);
    });
  }

  connect();
}());
