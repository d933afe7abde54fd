/*
 * The marketplace's checkout element: the processor's card fields and a Pay button, mounted in
 * any page (the marketplace's hosted checkout page uses it too). Plain JavaScript, no build step.
 *
 *   <div id="pay"></div>
 *   <script src="https://<marketplace host>/checkout.js"></script>
 *   <script>
 *     var checkout = Marketplace.checkout({
 *       sessionId: "cs_...", clientSecret: "cs_..._secret_...", mount: "#pay",
 *       onResult: function (result) { console.log(result.status); }   // optional
 *     });
 *     checkout.ready.then(...);       // the fields are mounted
 *     checkout.pay().then(...);       // what the Pay button does; resolves with the result
 *   </script>
 *
 * A result is {status: "complete" | "failed" | "expired" | "processing" | "requires_action",
 * message, redirect, payment}. On "complete" the page goes to the session's success URL and on
 * "requires_action" (3-D Secure) to the processor's authentication page, unless
 * {redirect: false} was given. The card number goes only to the processor's fields (an iframe
 * of the simulator in the demo, Stripe's Payment Element, Adyen's card component); this script
 * sends the platform the token they answer, with the session's client secret, never a cookie.
 */
(function (global) {
  "use strict";

  var script = document.currentScript;
  var PLATFORM = script && script.src ? new URL(script.src, global.location.href).origin : global.location.origin;
  var STYLE_ID = "mpc-style";
  var CSS = [
    ".mpc{--mpc-brand:#4f46e5;--mpc-on-brand:#fff;font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#111827;max-width:100%}",
    ".mpc-fields{min-height:2rem}",
    ".mpc-frame{display:block;width:100%;min-width:0;height:12.5rem;border:0;background:transparent}",
    ".mpc-alert{color:#7f1d1d;background:#fef2f2;border:1px solid #fecaca;border-radius:8px;padding:.7rem .85rem;margin:.75rem 0 0;font-size:.95rem}",
    ".mpc-alert:empty{display:none}",
    ".mpc-status{color:#374151;font-size:.9rem;margin:.5rem 0 0}",
    ".mpc-status:empty{display:none}",
    ".mpc-pay{display:flex;width:100%;align-items:center;justify-content:center;gap:.5rem;margin-top:1rem;font:inherit;font-weight:650;font-size:1.05rem;",
    "padding:.85rem 1rem;border-radius:8px;border:1px solid var(--mpc-brand);background:var(--mpc-brand);color:var(--mpc-on-brand);cursor:pointer}",
    ".mpc-pay:focus-visible{outline:3px solid rgba(0,0,0,.35);outline-offset:2px}",
    ".mpc-pay[disabled]{opacity:.65;cursor:progress}"
  ].join("");

  function injectStyle() {
    if (document.getElementById(STYLE_ID)) { return; }
    var style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  function post(path, body) {
    return fetch(PLATFORM + path, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    });
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(tag);
    });
  }

  // ------------------------------------------------------------------ the processors' fields

  function simulatorFields(container, info) {
    var frame = document.createElement("iframe");
    var origin = new URL(info.url).origin;
    var pending = {};
    var counter = 0;
    frame.className = "mpc-frame";
    frame.title = "Card details";
    frame.src = info.url + "?origin=" + encodeURIComponent(global.location.origin);
    var driver = {onSubmit: null};
    var ready = new Promise(function (resolve) {
      global.addEventListener("message", function (event) {
        if (event.origin !== origin || event.source !== frame.contentWindow) { return; }
        var data = event.data || {};
        if (data.type === "simulator:ready") { resolve(); }
        if (data.type === "simulator:resize" && data.height) { frame.style.height = Math.ceil(data.height) + "px"; }
        if (data.type === "simulator:submit" && driver.onSubmit) { driver.onSubmit(); }
        if ((data.type === "simulator:token" || data.type === "simulator:error") && pending[data.id]) {
          var settle = pending[data.id];
          delete pending[data.id];
          if (data.type === "simulator:token") { settle.resolve(data.token); }
          else { settle.reject({message: data.message, param: data.param}); }
        }
      });
    });
    container.appendChild(frame);
    driver.ready = ready;
    driver.tokenize = function () {
      counter += 1;
      var id = "t" + counter;
      return new Promise(function (resolve, reject) {
        pending[id] = {resolve: resolve, reject: reject};
        frame.contentWindow.postMessage({type: "simulator:tokenize", id: id}, origin);
      });
    };
    driver.focus = function () { frame.contentWindow.postMessage({type: "simulator:focus"}, origin); };
    return driver;
  }

  function stripeFields(container, info, session) {
    // Stripe's Payment Element with the gateway account's publishable key; the card goes to
    // Stripe, which answers a PaymentMethod id (pm_...), confirmed through our endpoint.
    var driver = {onSubmit: null, focus: function () {}};
    var elements, stripe;
    driver.ready = loadScript("https://js.stripe.com/v3/").then(function () {
      stripe = global.Stripe(info.publishable_key);
      var options = {mode: session.mode === "setup" ? "setup" : "payment", paymentMethodCreation: "manual", currency: session.currency || "usd"};
      if (session.mode !== "setup") { options.amount = session.amount; }
      elements = stripe.elements(options);
      elements.create("payment").mount(container);
    });
    driver.tokenize = function () {
      return elements.submit().then(function (submitted) {
        if (submitted.error) { throw {message: submitted.error.message}; }
        return stripe.createPaymentMethod({elements: elements});
      }).then(function (created) {
        if (created.error) { throw {message: created.error.message}; }
        return created.paymentMethod.id;
      });
    };
    return driver;
  }

  function adyenFields(container, info, session) {
    // Adyen's card component (Web Drop-in's card) with the client key: it answers the card's
    // encrypted fields, which we pass on as the token (a JSON object) for Adyen's /payments.
    var driver = {onSubmit: null, focus: function () {}};
    var state = null, component;
    var env = info.environment === "live" ? "live" : "test";
    var base = "https://checkoutshopper-" + env + ".adyen.com/checkoutshopper/sdk/5.59.0/";
    var css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = base + "adyen.css";
    document.head.appendChild(css);
    driver.ready = loadScript(base + "adyen.js").then(function () {
      return global.AdyenCheckout({
        clientKey: info.client_key,
        environment: env,
        amount: {value: session.amount, currency: (session.currency || "eur").toUpperCase()},
        onChange: function (s) { state = s; }
      });
    }).then(function (adyen) {
      component = adyen.create("card", {hasHolderName: false});
      component.mount(container);
    });
    driver.tokenize = function () {
      if (!state || !state.isValid) {
        if (component) { component.showValidation(); }
        return Promise.reject({message: "Check the card details."});
      }
      return Promise.resolve(JSON.stringify(state.data.paymentMethod));
    };
    return driver;
  }

  var DRIVERS = {simulator: simulatorFields, stripe: stripeFields, adyen: adyenFields};

  // ------------------------------------------------------------------ the element

  function checkout(options) {
    options = options || {};
    var root = typeof options.mount === "string" ? document.querySelector(options.mount) : options.mount;
    if (!root) { throw new Error("Marketplace.checkout: nothing to mount on (" + options.mount + ")"); }
    if (!options.sessionId || !options.clientSecret) { throw new Error("Marketplace.checkout: sessionId and clientSecret are required"); }
    injectStyle();
    var base = "/checkout/" + encodeURIComponent(options.sessionId);
    var secret = options.clientSecret;
    var follow = options.redirect !== false;
    var box = document.createElement("div");
    box.className = "mpc";
    var fields = document.createElement("div");
    fields.className = "mpc-fields";
    var alert = document.createElement("div");
    alert.className = "mpc-alert";
    alert.setAttribute("role", "alert");
    alert.setAttribute("aria-live", "assertive");
    var status = document.createElement("p");
    status.className = "mpc-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    box.appendChild(fields);
    box.appendChild(alert);
    box.appendChild(status);
    var button = null;
    if (options.button !== false) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "mpc-pay";
      button.disabled = true;
      button.textContent = "Loading…";
      box.appendChild(button);
    }
    root.appendChild(box);

    var driver = null, session = null, busy = false, polls = 0;
    var MAX_POLLS = 90;
    var controller = {};

    function report(result) {
      if (typeof options.onResult === "function") { options.onResult(result); }
      return result;
    }
    function show(message) { alert.textContent = ""; if (message) { setTimeout(function () { alert.textContent = message; }, 30); } }
    function idle(label) {
      busy = false;
      status.textContent = "";
      if (button) { button.disabled = false; button.textContent = label || payLabel(); }
    }
    function payLabel() { return session && session.mode === "setup" ? "Save card" : "Pay " + (session ? session.total : ""); }

    function settle(answer) {
      var data = answer.data || {};
      if (!answer.ok) {
        var message = (data.error && data.error.message) || "Something went wrong. Try again.";
        show(message);
        idle();
        return report({status: "error", message: message});
      }
      if (data.status === "complete") {
        status.textContent = session && session.mode === "setup" ? "Card saved." : "Payment received.";
        if (button) { button.textContent = session && session.mode === "setup" ? "Saved" : "Paid"; }
        if (follow && data.redirect) { global.location.assign(new URL(data.redirect, PLATFORM).href); }
        return report(data);
      }
      if (data.status === "requires_action" && data.redirect) {
        status.textContent = "Opening your bank's check…";
        if (follow) { global.location.assign(data.redirect); }
        return report(data);
      }
      if (data.status === "processing" || data.status === "open") {
        polls += 1;
        if (polls > MAX_POLLS) {
          show("Your payment is still being processed. Don't pay again: check back in a few minutes.");
          status.textContent = "";
          return report({status: "processing", payment: data.payment});
        }
        status.textContent = "Processing your payment…";
        return new Promise(function (resolve) { setTimeout(resolve, 1000); }).then(function () {
          return post(base + "/status", {client_secret: secret});
        }).then(settle);
      }
      if (data.status === "expired") {
        show(data.message || "This checkout has expired.");
        if (button) { button.disabled = true; button.textContent = "Expired"; }
        return report(data);
      }
      show(data.message || "Your card was declined. Try another card.");
      idle();
      if (driver) { driver.focus(); }
      return report(data);
    }

    controller.pay = function () {
      if (busy || !driver) { return Promise.resolve({status: "busy"}); }
      busy = true;
      polls = 0;
      show("");
      if (button) { button.disabled = true; button.textContent = "Processing…"; }
      status.textContent = "Processing…";
      return driver.tokenize().then(function (token) {
        return post(base + "/confirm", {client_secret: secret, token: token}).then(settle);
      }, function (error) {
        show((error && error.message) || "Check the card details.");
        idle();
        return report({status: "invalid", message: error && error.message});
      }).catch(function () {
        show("The payment could not be sent. Check your connection and try again.");
        idle();
        return report({status: "error"});
      });
    };

    controller.ready = post(base + "/session", {client_secret: secret}).then(function (answer) {
      if (!answer.ok) { throw new Error((answer.data.error && answer.data.error.message) || "unknown session"); }
      session = answer.data;
      box.style.setProperty("--mpc-brand", session.marketplace.brand_color);
      box.style.setProperty("--mpc-on-brand", session.marketplace.on_brand_color);
      if (session.status === "complete") { return settle({ok: true, data: {status: "complete", redirect: session.redirect}}); }
      if (session.status === "expired") { return settle({ok: true, data: {status: "expired"}}); }
      var make = DRIVERS[session.fields.kind];
      if (!make) { throw new Error("this marketplace has no card fields"); }
      driver = make(fields, session.fields, session);
      driver.onSubmit = controller.pay;
      return driver.ready.then(function () { idle(); });
    }).catch(function (error) {
      show("Checkout is unavailable: " + error.message);
      if (button) { button.textContent = "Unavailable"; }
      throw error;
    });
    if (button) { button.addEventListener("click", controller.pay); }
    return controller;
  }

  global.Marketplace = global.Marketplace || {};
  global.Marketplace.checkout = checkout;
})(window);
