// Live figures: keeps the images of a page that carry data-live at their figure's current version.
// Plain script, no framework (the pages' CSP allows same-origin scripts only, nothing inline).
// Without JavaScript a page simply shows the version it was served with.
//
// The server sends, over one Server-Sent Events stream, {"key", "pin", "stale"} for every change
// of a followed figure (key: the data-live attribute; pin: the new value of the URLs' _v). The
// new image is loaded out of sight, then its URLs replace the old ones: no flash, and no layout
// shift, as the <img> keeps its width and height. The tabs of one browser share one stream: the
// tab holding a Web Lock opens it for every tab's images and relays its messages to the others
// on a BroadcastChannel (browsers open at most six HTTP/1.1 connections per site, so a stream
// per tab would stall a seventh tab). Where either API is missing, each tab has its own stream.
(function () {
  "use strict";

  var script = document.currentScript;
  var STREAM = (script && script.dataset.stream) || "/live/stream";
  var MAX = Number(script && script.dataset.max) || 64; // images per stream, as the server allows
  var PIN = "_v";
  var CHANNEL = "figserve-live";
  var LOCK = "figserve-live-stream";
  var BACKOFF_MIN = 1000;
  var BACKOFF_MAX = 60000;
  // Added to the alt text of an image whose data could not be read (the server's own words).
  var STALE_NOTE = (script && script.dataset.staleNote) || "(not up to date)";
  var PIN_IN_URL = /([?&])_v=[^&#]*/;

  function images() {
    return Array.prototype.slice.call(document.querySelectorAll("img[data-live]"));
  }

  // What the stream follows for an image: the path and query of the URL it shows, without pin.
  function target(url) {
    if (!url) return null;
    var u = new URL(url, location.href);
    if (u.origin !== location.origin) return null;
    u.searchParams.delete(PIN);
    return u.pathname + u.search;
  }

  function pinOf(url) {
    var m = /[?&]_v=([^&#]*)/.exec(url || "");
    return m ? decodeURIComponent(m[1]) : null;
  }

  function withPin(url, pin) {
    var value = PIN + "=" + encodeURIComponent(pin);
    if (PIN_IN_URL.test(url)) return url.replace(PIN_IN_URL, "$1" + value);
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + value;
  }

  function srcsetWithPin(srcset, pin) {
    return srcset.split(",").map(function (candidate) {
      var parts = candidate.trim().split(/\s+/);
      parts[0] = withPin(parts[0], pin);
      return parts.join(" ");
    }).join(", ");
  }

  // -- updating images -------------------------------------------------------------------

  var turns = new WeakMap(); // image -> number of its latest swap, so an older one never wins

  function markStale(img, stale) {
    var alt = img.getAttribute("alt") || "";
    var marked = alt.slice(-STALE_NOTE.length - 1) === " " + STALE_NOTE;
    var base = marked ? alt.slice(0, -STALE_NOTE.length - 1) : alt;
    if (stale) {
      img.setAttribute("alt", base + " " + STALE_NOTE);
      img.setAttribute("data-live-stale", "");
    } else if (marked || img.hasAttribute("data-live-stale")) {
      img.setAttribute("alt", base);
      img.removeAttribute("data-live-stale");
    }
  }

  // Every candidate of an image: its src and srcset, and the srcset of each <source> of its
  // <picture> (figserve offers PNGs with the same figure in WebP beside them).
  function sources(img) {
    var out = [img];
    var parent = img.parentElement;
    if (parent && parent.tagName === "PICTURE") {
      Array.prototype.forEach.call(parent.querySelectorAll("source"), function (s) { out.push(s); });
    }
    return out;
  }

  function swap(img, pin) {
    var turn = (turns.get(img) || 0) + 1;
    turns.set(img, turn);
    var change = function () {
      if (turns.get(img) !== turn) return; // a newer one is on its way
      sources(img).forEach(function (el) {
        var srcset = el.getAttribute("srcset");
        if (srcset) el.setAttribute("srcset", srcsetWithPin(srcset, pin));
      });
      img.src = withPin(img.getAttribute("src"), pin);
    };
    var shownNow = img.currentSrc;
    if (!shownNow) { change(); return; } // not loaded yet (a lazy image): nothing to flash
    // Load the candidate the browser shows (this format, this density), out of sight; the
    // image changes once it is ready, and then finds it in the browser's memory.
    var ahead = new Image();
    ahead.src = withPin(shownNow, pin);
    ahead.decode().then(change, function () {
      // Not loadable now; the next message or reconnect tries again.
    });
  }

  function apply(figures) {
    figures.forEach(function (f) {
      images().forEach(function (img) {
        if (img.dataset.live !== f.key) return;
        markStale(img, f.stale);
        if (pinOf(img.getAttribute("src")) !== f.pin) swap(img, f.pin);
      });
    });
  }

  // -- streams -----------------------------------------------------------------------------

  // One EventSource over some images, reconnecting with backoff and jitter. It asks with
  // last=<id> for what changed since the last message it got (the server sends every current
  // pin when it cannot tell).
  function Connection(targets, onFigures) {
    this.targets = targets;
    this.onFigures = onFigures;
    this.backoff = BACKOFF_MIN;
    this.last = null;
    this.source = null;
    this.timer = null;
    this.closed = false;
    this.open();
  }

  Connection.prototype.url = function () {
    var query = this.targets.map(function (t) { return "f=" + encodeURIComponent(t); });
    if (this.last) query.push("last=" + encodeURIComponent(this.last));
    return STREAM + "?" + query.join("&");
  };

  Connection.prototype.open = function () {
    var self = this;
    if (self.closed) return;
    var source = self.source = new EventSource(self.url());
    source.addEventListener("figure", function (e) {
      self.backoff = BACKOFF_MIN;
      if (e.lastEventId) self.last = e.lastEventId;
      self.onFigures(JSON.parse(e.data).figures);
    });
    source.addEventListener("invalid", function (e) {
      console.warn("figserve live: images not followed", JSON.parse(e.data).errors);
    });
    source.addEventListener("bye", function () {
      // The server is stopping: come back soon (to another instance, or this one restarted).
      self.again(200 + Math.random() * 1300);
    });
    source.onopen = function () { self.backoff = BACKOFF_MIN; };
    source.onerror = function () {
      var wait = self.backoff * (0.5 + Math.random());
      self.backoff = Math.min(self.backoff * 2, BACKOFF_MAX);
      self.again(wait);
    };
  };

  Connection.prototype.again = function (wait) {
    var self = this;
    if (self.source) self.source.close();
    self.source = null;
    clearTimeout(self.timer);
    self.timer = setTimeout(function () { self.open(); }, wait);
  };

  Connection.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
  };

  function connect(targets, onFigures) {
    var out = [];
    for (var i = 0; i < targets.length; i += MAX) {
      out.push(new Connection(targets.slice(i, i + MAX), onFigures));
    }
    return out;
  }

  // -- this tab, alone or with the others --------------------------------------------------

  var tab = Math.random().toString(36).slice(2);
  var mine = [];

  function collect() {
    var seen = {};
    images().forEach(function (img) {
      var t = target(img.currentSrc || img.getAttribute("src"));
      if (t) seen[t] = true;
    });
    return Object.keys(seen).sort();
  }

  // Follows a list of images with as few streams as possible; reconnects when the list changes
  // (a tab came or went, an image now shows another density).
  function Follower(onFigures) {
    this.onFigures = onFigures;
    this.key = null;
    this.connections = [];
    this.timer = null;
  }

  Follower.prototype.follow = function (targets) {
    var self = this;
    clearTimeout(self.timer);
    self.timer = setTimeout(function () {
      var key = targets.join("\n");
      if (key === self.key) return;
      self.key = key;
      self.connections.forEach(function (c) { c.close(); });
      self.connections = targets.length ? connect(targets, self.onFigures) : [];
    }, 100);
  };

  function alone() {
    var follower = new Follower(apply);
    follower.follow(mine);
    return function () { follower.follow(mine); };
  }

  function shared() {
    var channel = new BroadcastChannel(CHANNEL);
    var lead = null; // this tab's leadership: the targets of every tab, and the streams
    channel.onmessage = function (e) {
      var m = e.data || {};
      if (m.t === "figures") apply(m.figures);
      else if (m.t === "roll") channel.postMessage({ t: "want", tab: tab, targets: mine });
      else if (lead && m.t === "want") lead.set(m.tab, m.targets);
      else if (lead && m.t === "bye") lead.set(m.tab, null);
    };
    addEventListener("pagehide", function () { channel.postMessage({ t: "bye", tab: tab }); });
    channel.postMessage({ t: "want", tab: tab, targets: mine });
    navigator.locks.request(LOCK, function () {
      // Granted when no other tab of this site leads (or the one that did has gone): held for
      // as long as this tab lives.
      var tabs = {};
      var known = {}; // key -> the latest notice: what a tab that comes later is told at once
      var follower = new Follower(function (figures) {
        figures.forEach(function (f) { known[f.key] = f; });
        apply(figures);
        channel.postMessage({ t: "figures", figures: figures });
      });
      lead = {
        set: function (id, targets) {
          if (targets && !tabs[id]) {
            var all = Object.keys(known).map(function (k) { return known[k]; });
            if (all.length) channel.postMessage({ t: "figures", figures: all });
          }
          if (targets) tabs[id] = targets; else delete tabs[id];
          var all = {};
          Object.keys(tabs).forEach(function (k) {
            tabs[k].forEach(function (t) { all[t] = true; });
          });
          follower.follow(Object.keys(all).sort());
        },
      };
      lead.set(tab, mine);
      channel.postMessage({ t: "roll" });
      return new Promise(function () {});
    });
    return function () {
      if (lead) lead.set(tab, mine);
      else channel.postMessage({ t: "want", tab: tab, targets: mine });
    };
  }

  function start() {
    mine = collect();
    var changed = ("BroadcastChannel" in window && navigator.locks) ? shared() : alone();
    // An image that loads later (a lazy one, another density) may show another URL.
    document.addEventListener("load", function (e) {
      if (!e.target.dataset || e.target.dataset.live === undefined) return;
      var now = collect();
      if (now.join("\n") !== mine.join("\n")) {
        mine = now;
        changed();
      }
    }, true);
  }

  // The images of the page have loaded by then, so each shows the density it will keep.
  if (document.readyState === "complete") start();
  else addEventListener("load", start);
})();
