/*
 * kbchat embeddable chat widget — one self-contained vanilla ES2019 file, no build step.
 *
 * Embed:
 *   <script src="https://HOST/widget.js" data-key="PUBLIC_KEY" async></script>
 * Optional attributes: data-title, data-lang (UI language override), data-position ("right" | "left").
 *
 * The API base URL is the origin of this script's src. Everything lives in a Shadow DOM attached to
 * <div id="kbchat-widget-host">, so host-page CSS cannot break it and its CSS cannot leak.
 *
 * SAFETY: nothing that comes from the server, the model or the documents is ever parsed as HTML.
 * Every dynamic node is built with createElement and filled with textContent. The only innerHTML
 * in this file is the static template in buildTemplate(), which contains no dynamic data.
 *
 * Global API (handy for tests): window.kbchatWidget = { open(), close(), ask(text) }.
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- locate our <script> and config
  var script =
    document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-key]');
  if (!script) {
    console.warn("kbchat widget: cannot find its own <script> element");
    return;
  }
  var KEY = (script.getAttribute("data-key") || "").trim();
  if (!KEY || KEY === "{{WIDGET_KEY}}") {
    console.warn('kbchat widget: the <script> tag needs a data-key="PUBLIC_KEY" attribute');
    return;
  }
  if (document.getElementById("kbchat-widget-host")) return; // embedded twice: keep the first

  var BASE;
  try {
    BASE = new URL(script.src, document.baseURI).origin;
  } catch (e) {
    BASE = window.location.origin;
  }
  var POSITION = script.getAttribute("data-position") === "left" ? "left" : "right";
  var STORAGE_KEY = "kbchat:" + KEY + ":session";

  // ---------------------------------------------------------------- interface strings
  var STRINGS = {
    en: { title: "Ask us", open: "Open chat", close: "Close chat", placeholder: "Ask a question…",
      send: "Send", thinking: "Thinking…", error: "Sorry, something went wrong. Please try again.",
      rateLimited: "Too many requests. Try again in {s} s.", sources: "Sources",
      up: "Helpful", down: "Not helpful", thanks: "Thanks for your feedback!",
      newChat: "New conversation" },
    de: { title: "Fragen Sie uns", open: "Chat öffnen", close: "Chat schließen",
      placeholder: "Stellen Sie eine Frage…", send: "Senden", thinking: "Denke nach…",
      error: "Leider ist ein Fehler aufgetreten. Bitte versuchen Sie es erneut.",
      rateLimited: "Zu viele Anfragen. Bitte in {s} s erneut versuchen.", sources: "Quellen",
      up: "Hilfreich", down: "Nicht hilfreich", thanks: "Danke für Ihr Feedback!",
      newChat: "Neues Gespräch" },
    es: { title: "Pregúntanos", open: "Abrir chat", close: "Cerrar chat",
      placeholder: "Haz una pregunta…", send: "Enviar", thinking: "Pensando…",
      error: "Lo sentimos, algo salió mal. Inténtalo de nuevo.",
      rateLimited: "Demasiadas solicitudes. Inténtalo de nuevo en {s} s.", sources: "Fuentes",
      up: "Útil", down: "No útil", thanks: "¡Gracias por tu opinión!",
      newChat: "Nueva conversación" },
    fr: { title: "Posez-nous une question", open: "Ouvrir le chat", close: "Fermer le chat",
      placeholder: "Posez une question…", send: "Envoyer", thinking: "Réflexion…",
      error: "Désolé, une erreur s’est produite. Veuillez réessayer.",
      rateLimited: "Trop de requêtes. Réessayez dans {s} s.", sources: "Sources",
      up: "Utile", down: "Pas utile", thanks: "Merci pour votre retour !",
      newChat: "Nouvelle conversation" },
    it: { title: "Chiedi a noi", open: "Apri la chat", close: "Chiudi la chat",
      placeholder: "Fai una domanda…", send: "Invia", thinking: "Sto pensando…",
      error: "Spiacenti, si è verificato un errore. Riprova.",
      rateLimited: "Troppe richieste. Riprova tra {s} s.", sources: "Fonti",
      up: "Utile", down: "Non utile", thanks: "Grazie per il feedback!",
      newChat: "Nuova conversazione" },
    pt: { title: "Pergunte-nos", open: "Abrir chat", close: "Fechar chat",
      placeholder: "Faça uma pergunta…", send: "Enviar", thinking: "Pensando…",
      error: "Desculpe, algo deu errado. Tente novamente.",
      rateLimited: "Muitas solicitações. Tente novamente em {s} s.", sources: "Fontes",
      up: "Útil", down: "Não útil", thanks: "Obrigado pelo seu feedback!",
      newChat: "Nova conversa" },
    nl: { title: "Vraag het ons", open: "Chat openen", close: "Chat sluiten",
      placeholder: "Stel een vraag…", send: "Verzenden", thinking: "Even denken…",
      error: "Sorry, er ging iets mis. Probeer het opnieuw.",
      rateLimited: "Te veel verzoeken. Probeer het over {s} s opnieuw.", sources: "Bronnen",
      up: "Nuttig", down: "Niet nuttig", thanks: "Bedankt voor je feedback!",
      newChat: "Nieuw gesprek" },
    ru: { title: "Спросите нас", open: "Открыть чат", close: "Закрыть чат",
      placeholder: "Задайте вопрос…", send: "Отправить", thinking: "Думаю…",
      error: "Извините, что-то пошло не так. Попробуйте ещё раз.",
      rateLimited: "Слишком много запросов. Повторите через {s} с.", sources: "Источники",
      up: "Полезно", down: "Бесполезно", thanks: "Спасибо за отзыв!",
      newChat: "Новый разговор" },
    zh: { title: "向我们提问", open: "打开聊天", close: "关闭聊天", placeholder: "请输入问题…",
      send: "发送", thinking: "正在思考…", error: "抱歉，出了点问题。请重试。",
      rateLimited: "请求过多。请在 {s} 秒后重试。", sources: "来源",
      up: "有帮助", down: "没有帮助", thanks: "感谢您的反馈！", newChat: "新对话" },
    ja: { title: "お問い合わせ", open: "チャットを開く", close: "チャットを閉じる",
      placeholder: "質問を入力…", send: "送信", thinking: "考え中…",
      error: "申し訳ありません。エラーが発生しました。もう一度お試しください。",
      rateLimited: "リクエストが多すぎます。{s} 秒後にもう一度お試しください。", sources: "出典",
      up: "役に立った", down: "役に立たなかった", thanks: "フィードバックありがとうございます！",
      newChat: "新しい会話" },
    ar: { title: "اسألنا", open: "فتح المحادثة", close: "إغلاق المحادثة",
      placeholder: "اطرح سؤالاً…", send: "إرسال", thinking: "جارٍ التفكير…",
      error: "عذرًا، حدث خطأ ما. يرجى المحاولة مرة أخرى.",
      rateLimited: "طلبات كثيرة جدًا. حاول مرة أخرى بعد {s} ثانية.", sources: "المصادر",
      up: "مفيد", down: "غير مفيد", thanks: "شكرًا على ملاحظاتك!", newChat: "محادثة جديدة" },
  };
  var RTL = { ar: true, he: true, fa: true, ur: true };

  var LANG = (script.getAttribute("data-lang") || navigator.language || "en")
    .slice(0, 2).toLowerCase();
  var T = STRINGS[LANG] || STRINGS.en;
  var DIR = RTL[LANG] ? "rtl" : "ltr";
  var TITLE = script.getAttribute("data-title") || T.title;

  // ---------------------------------------------------------------- small helpers
  /** createElement + class + textContent: the only way dynamic text enters the DOM. */
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text);
    return node;
  }

  function basename(path) {
    var parts = String(path || "").split(/[\\/]/);
    return parts[parts.length - 1] || String(path || "");
  }

  function storedSession() {
    try { return localStorage.getItem(STORAGE_KEY); } catch (e) { return null; }
  }
  function storeSession(id) {
    try { if (id) localStorage.setItem(STORAGE_KEY, String(id)); } catch (e) { /* private mode */ }
  }
  function forgetSession() {
    try { localStorage.removeItem(STORAGE_KEY); } catch (e) { /* private mode */ }
  }

  // ---------------------------------------------------------------- static template (no dynamic data!)
  var CSS = [
    ":host { all: initial; }",
    // The host <div> lives in the page, so hostile `div { ... !important }` rules reach it; an
    // !important declaration from inside the shadow tree wins over the page's !important ones.
    ":host { all: initial !important; display: block !important; }",
    ".kbchat-root, .kbchat-root * { box-sizing: border-box; font-family: system-ui, -apple-system,",
    "  'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; font-size: 14px; line-height: 20px;",
    "  color: #1f2328; letter-spacing: normal; text-transform: none; font-style: normal;",
    "  font-weight: 400; text-shadow: none; }",
    ".kbchat-root { position: fixed; bottom: 20px; z-index: 2147483000; display: block;",
    "  margin: 0; padding: 0; border: 0; }",
    ".kbchat-root.pos-right { right: 20px; } .kbchat-root.pos-left { left: 20px; }",
    "button { display: inline-flex; align-items: center; justify-content: center; cursor: pointer;",
    "  margin: 0; border: 0; background: transparent; visibility: visible; opacity: 1; }",
    "button:focus-visible, textarea:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }",
    "button:disabled { cursor: default; opacity: 0.5; }",
    ".kbchat-bubble { width: 56px; height: 56px; border-radius: 28px; padding: 0;",
    "  background: #2563eb; color: #ffffff; box-shadow: 0 4px 14px rgba(0,0,0,0.25); }",
    ".kbchat-bubble:hover { background: #1d4ed8; }",
    ".kbchat-bubble svg { width: 26px; height: 26px; fill: #ffffff; display: block; }",
    ".kbchat-panel { position: absolute; bottom: 72px; width: 370px; height: 540px;",
    "  max-width: calc(100vw - 40px); max-height: calc(100vh - 110px); display: flex;",
    "  flex-direction: column; background: #ffffff; border: 1px solid #d0d7de; border-radius: 12px;",
    "  box-shadow: 0 10px 30px rgba(0,0,0,0.25); overflow: hidden; text-align: left; }",
    ".kbchat-panel[hidden] { display: none; }",
    ".pos-right .kbchat-panel { right: 0; } .pos-left .kbchat-panel { left: 0; }",
    ".kbchat-panel[dir='rtl'] { text-align: right; }",
    ".kbchat-header { display: flex; align-items: center; gap: 4px; padding: 10px 10px 10px 14px;",
    "  background: #2563eb; }",
    ".kbchat-panel[dir='rtl'] .kbchat-header { padding: 10px 14px 10px 10px; }",
    ".kbchat-title { flex: 1 1 auto; margin: 0; font-size: 16px; line-height: 22px; font-weight: 600;",
    "  color: #ffffff; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }",
    ".kbchat-header button { width: 32px; height: 32px; border-radius: 6px; color: #ffffff;",
    "  font-size: 18px; line-height: 18px; padding: 0; }",
    ".kbchat-header button:hover { background: rgba(255,255,255,0.18); }",
    ".kbchat-header button:focus-visible { outline-color: #fde68a; outline-offset: 0; }",
    ".kbchat-messages { flex: 1 1 auto; overflow-y: auto; padding: 12px; display: flex;",
    "  flex-direction: column; gap: 10px; background: #f6f8fa; }",
    ".kbchat-msg { max-width: 85%; padding: 8px 12px; border-radius: 12px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; word-break: normal; }",
    ".kbchat-msg-user { align-self: flex-end; background: #2563eb; color: #ffffff; }",
    ".kbchat-msg-assistant { align-self: flex-start; background: #ffffff; border: 1px solid #d0d7de; }",
    ".kbchat-msg-error { align-self: stretch; max-width: 100%; background: #fff1f0;",
    "  border: 1px solid #ffa39e; color: #a8071a; }",
    ".kbchat-text { display: block; white-space: pre-wrap; color: inherit; }",
    ".kbchat-typing { display: inline-block; color: #57606a; font-style: italic; }",
    ".kbchat-sources-heading { display: block; margin-top: 8px; font-size: 12px; line-height: 16px;",
    "  font-weight: 600; color: #57606a; }",
    ".kbchat-sources { list-style: none; margin: 2px 0 0 0; padding: 0; }",
    ".kbchat-source { display: block; margin: 0; padding: 0; font-size: 12px; line-height: 16px;",
    "  color: #0969da; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: help; }",
    ".kbchat-source.cited { font-weight: 600; }",
    ".kbchat-feedback { display: flex; align-items: center; gap: 4px; margin-top: 6px; }",
    ".kbchat-feedback button { width: 30px; height: 26px; border-radius: 6px; padding: 0;",
    "  border: 1px solid #d0d7de; background: #ffffff; font-size: 14px; }",
    ".kbchat-feedback button:hover:not(:disabled) { background: #eaeef2; }",
    ".kbchat-feedback button.chosen { background: #dbeafe; border-color: #2563eb; opacity: 1; }",
    ".kbchat-thanks { font-size: 12px; line-height: 16px; color: #57606a; }",
    ".kbchat-form { display: flex; align-items: flex-end; gap: 8px; padding: 10px;",
    "  border-top: 1px solid #d0d7de; background: #ffffff; margin: 0; }",
    ".kbchat-input { flex: 1 1 auto; resize: none; height: 40px; max-height: 120px; margin: 0;",
    "  padding: 9px 10px; border: 1px solid #d0d7de; border-radius: 8px; background: #ffffff;",
    "  color: #1f2328; display: block; text-align: start; }",
    ".kbchat-input::placeholder { color: #6e7781; opacity: 1; }",
    ".kbchat-send { height: 40px; padding: 0 14px; border-radius: 8px; background: #2563eb;",
    "  color: #ffffff; font-weight: 600; }",
    ".kbchat-send:hover:not(:disabled) { background: #1d4ed8; }",
  ].join("\n");

  // Static markup only: labels, titles and placeholders are filled in afterwards via properties.
  var TEMPLATE =
    '<div class="kbchat-root">' +
    '  <div class="kbchat-panel" role="dialog" hidden>' +
    '    <div class="kbchat-header">' +
    '      <h2 class="kbchat-title"></h2>' +
    '      <button type="button" class="kbchat-new">&#x21bb;</button>' +
    '      <button type="button" class="kbchat-close">&#x2715;</button>' +
    "    </div>" +
    '    <div class="kbchat-messages" role="log" aria-live="polite"></div>' +
    '    <form class="kbchat-form" novalidate>' +
    '      <textarea class="kbchat-input" rows="1"></textarea>' +
    '      <button type="submit" class="kbchat-send"></button>' +
    "    </form>" +
    "  </div>" +
    '  <button type="button" class="kbchat-bubble" part="bubble" aria-expanded="false">' +
    '    <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M4 3h16a2 2 0 0 1 2 2v11' +
    'a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>' +
    "  </button>" +
    "</div>";

  // ---------------------------------------------------------------- build the DOM
  var host = document.createElement("div");
  host.id = "kbchat-widget-host";
  var shadow = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = CSS;
  shadow.appendChild(style);
  var holder = document.createElement("div");
  holder.innerHTML = TEMPLATE; // static template, no dynamic data
  var root = holder.firstElementChild;
  shadow.appendChild(root);

  var panel = root.querySelector(".kbchat-panel");
  var titleEl = root.querySelector(".kbchat-title");
  var newBtn = root.querySelector(".kbchat-new");
  var closeBtn = root.querySelector(".kbchat-close");
  var messages = root.querySelector(".kbchat-messages");
  var form = root.querySelector(".kbchat-form");
  var input = root.querySelector(".kbchat-input");
  var sendBtn = root.querySelector(".kbchat-send");
  var bubble = root.querySelector(".kbchat-bubble");

  root.classList.add("pos-" + POSITION);
  panel.setAttribute("lang", LANG);
  panel.setAttribute("dir", DIR);
  panel.setAttribute("aria-label", TITLE);
  titleEl.textContent = TITLE;
  newBtn.setAttribute("aria-label", T.newChat);
  newBtn.title = T.newChat;
  closeBtn.setAttribute("aria-label", T.close);
  closeBtn.title = T.close;
  input.setAttribute("placeholder", T.placeholder);
  input.setAttribute("aria-label", T.placeholder);
  sendBtn.textContent = T.send;
  bubble.setAttribute("aria-label", T.open);

  // ---------------------------------------------------------------- state
  var sessionId = storedSession();
  var streaming = false;
  var controller = null; // AbortController of the running request

  // ---------------------------------------------------------------- open / close
  function isOpen() { return !panel.hidden; }

  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    bubble.setAttribute("aria-label", T.close);
    scrollToEnd();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-label", T.open);
    bubble.focus();
  }

  bubble.addEventListener("click", function () { if (isOpen()) close(); else open(); });
  closeBtn.addEventListener("click", close);
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && isOpen()) { e.preventDefault(); close(); }
  });

  newBtn.addEventListener("click", function () {
    if (controller) controller.abort();
    forgetSession();
    sessionId = null;
    while (messages.firstChild) messages.removeChild(messages.firstChild);
    input.focus();
  });

  // ---------------------------------------------------------------- rendering
  function scrollToEnd() { messages.scrollTop = messages.scrollHeight; }

  function addUserMessage(text) {
    var node = el("div", "kbchat-msg kbchat-msg-user", text);
    messages.appendChild(node);
    scrollToEnd();
    return node;
  }

  /** An assistant bubble: a text span (streamed into) plus room for sources and feedback. */
  function addAssistantMessage(text) {
    var node = el("div", "kbchat-msg kbchat-msg-assistant");
    var textEl = el("span", "kbchat-text", text || "");
    node.appendChild(textEl);
    messages.appendChild(node);
    scrollToEnd();
    return { node: node, text: textEl };
  }

  function addError(text) {
    var node = el("div", "kbchat-msg kbchat-msg-error", text);
    node.setAttribute("role", "alert");
    messages.appendChild(node);
    scrollToEnd();
    return node;
  }

  /** "[n] file-name" per source, the title as tooltip; cited sources in bold. */
  function renderSources(container, sources, cited) {
    if (!Array.isArray(sources) || sources.length === 0) return;
    var old = container.querySelector(".kbchat-sources-block");
    if (old) container.removeChild(old);
    var citedSet = {};
    (Array.isArray(cited) ? cited : []).forEach(function (n) { citedSet[n] = true; });

    var block = el("div", "kbchat-sources-block");
    block.appendChild(el("span", "kbchat-sources-heading", T.sources));
    var list = el("ol", "kbchat-sources");
    sources.forEach(function (s, i) {
      if (!s || typeof s !== "object") return;
      var n = s.number != null ? s.number : i + 1;
      var label = "[" + n + "] " + basename(s.source);
      if (s.page != null && s.page !== "") label += " (p. " + s.page + ")";
      var item = el("li", "kbchat-source", label);
      var tip = s.title || s.source || "";
      if (s.section) tip += (tip ? " — " : "") + s.section;
      item.title = String(tip); // a property, never parsed as HTML
      if (citedSet[n]) item.classList.add("cited");
      list.appendChild(item);
    });
    block.appendChild(list);
    container.appendChild(block);
  }

  /** 👍/👎 buttons that POST /api/feedback once (with the session id); `previous` marks an
   *  existing rating. */
  function renderFeedback(container, messageId, previous) {
    if (messageId == null || !sessionId) return;
    var session = sessionId; // the server accepts feedback only from the answer's session
    var bar = el("div", "kbchat-feedback");
    var up = el("button", "", "👍");
    var down = el("button", "", "👎");
    up.type = down.type = "button";
    up.setAttribute("aria-label", T.up);
    up.title = T.up;
    down.setAttribute("aria-label", T.down);
    down.title = T.down;
    bar.appendChild(up);
    bar.appendChild(down);
    container.appendChild(bar);

    function finish(chosen) {
      up.disabled = down.disabled = true;
      if (chosen) chosen.classList.add("chosen");
      if (!bar.querySelector(".kbchat-thanks")) bar.appendChild(el("span", "kbchat-thanks", T.thanks));
    }
    if (previous === "up" || previous === "down") {
      finish(previous === "up" ? up : down);
      return;
    }
    function rate(rating, button) {
      up.disabled = down.disabled = true;
      fetch(BASE + "/api/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Kbchat-Key": KEY },
        body: JSON.stringify({ session_id: session, message_id: messageId, rating: rating }),
      }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        finish(button);
      }).catch(function () {
        up.disabled = down.disabled = false; // let the visitor try again
      });
    }
    up.addEventListener("click", function () { rate("up", up); });
    down.addEventListener("click", function () { rate("down", down); });
  }

  function setStreaming(on) {
    streaming = on;
    sendBtn.disabled = on;
    messages.setAttribute("aria-busy", on ? "true" : "false");
  }

  // ---------------------------------------------------------------- history across page loads
  function loadHistory() {
    if (!sessionId) return;
    var id = sessionId;
    fetch(BASE + "/api/sessions/" + encodeURIComponent(id), { headers: { "X-Kbchat-Key": KEY } })
      .then(function (r) {
        if (r.status === 404) { if (sessionId === id) { forgetSession(); sessionId = null; } return null; }
        if (!r.ok) return null;
        return r.json();
      })
      .then(function (data) {
        // Skip if the visitor already started chatting or reset in the meantime.
        if (!data || !Array.isArray(data.messages) || sessionId !== id || messages.firstChild) return;
        data.messages.forEach(function (m) {
          if (!m) return;
          if (m.role === "user") {
            addUserMessage(m.content || "");
          } else {
            var a = addAssistantMessage(m.content || "");
            renderSources(a.node, m.sources, null);
            renderFeedback(a.node, m.id, m.feedback);
          }
        });
        scrollToEnd();
      })
      .catch(function () { /* offline or blocked: start fresh, keep the id */ });
  }

  // ---------------------------------------------------------------- Server-Sent Events parsing
  /** Parse one SSE block ("event: x\ndata: {...}") into {event, data}. */
  function parseEvent(block) {
    var name = "message";
    var data = [];
    block.split(/\r\n|\r|\n/).forEach(function (line) {
      if (!line || line.charAt(0) === ":") return;
      var colon = line.indexOf(":");
      var field = colon === -1 ? line : line.slice(0, colon);
      var value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    });
    if (!data.length) return null;
    var payload;
    try { payload = JSON.parse(data.join("\n")); } catch (e) { payload = { text: data.join("\n") }; }
    return { event: name, data: payload || {} };
  }

  /** Read the response body, calling onEvent for every complete event. */
  function readStream(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "";
    function flush(final) {
      buffer = buffer.replace(/\r\n/g, "\n");
      var parts = buffer.split(/\n\n/);
      buffer = final ? "" : parts.pop();
      parts.forEach(function (block) {
        var ev = block.trim() ? parseEvent(block) : null;
        if (ev) onEvent(ev);
      });
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          buffer += decoder.decode();
          flush(true);
          return;
        }
        buffer += decoder.decode(chunk.value, { stream: true });
        flush(false);
        return pump();
      });
    }
    return pump();
  }

  // ---------------------------------------------------------------- sending a question
  // What to tell the visitor about a refused request (a Promise of the text). Refusals are RFC 9457
  // problem details: the server's `detail` (English) says what was wrong with this request, so a
  // 4xx shows it after the localised apology; a 5xx never does (nothing internal to show).
  function errorText(response) {
    var retry = response.headers.get("Retry-After");
    if (response.status === 429 || (response.status === 503 && retry)) {
      var wait = parseInt(retry || "", 10);
      if (!(wait >= 0)) wait = 30;
      return Promise.resolve(T.rateLimited.replace("{s}", String(wait)));
    }
    return response.json().then(function (problem) {
      var detail = problem && typeof problem.detail === "string" ? problem.detail : "";
      if (!detail || response.status >= 500) return T.error;
      return T.error + " (" + detail.slice(0, 300) + ")";
    }, function () { return T.error; });
  }

  function ask(text) {
    text = String(text == null ? "" : text).trim();
    if (!text || streaming) return Promise.resolve(false);
    if (!isOpen()) open();

    addUserMessage(text);
    var answer = addAssistantMessage("");
    var typing = el("span", "kbchat-typing", T.thinking);
    answer.node.appendChild(typing);
    setStreaming(true);

    var body = { message: text, stream: true };
    if (sessionId) body.session_id = sessionId;
    controller = typeof AbortController === "function" ? new AbortController() : null;
    var gotText = false;
    var failed = false;

    function removeTyping() { if (typing.parentNode) typing.parentNode.removeChild(typing); }
    function dropEmptyAnswer() {
      if (!gotText && answer.node.parentNode) answer.node.parentNode.removeChild(answer.node);
    }

    function onEvent(ev) {
      var d = ev.data;
      if (ev.event === "token") {
        if (d.text) {
          removeTyping();
          gotText = true;
          answer.text.textContent += String(d.text); // plain text, never HTML
          scrollToEnd();
        }
      } else if (ev.event === "sources") {
        renderSources(answer.node, d.sources, d.cited);
        scrollToEnd();
      } else if (ev.event === "done") {
        removeTyping();
        if (d.session_id) { sessionId = String(d.session_id); storeSession(sessionId); }
        if (d.language) answer.node.setAttribute("lang", String(d.language));
        if (gotText) renderFeedback(answer.node, d.message_id, null);
        scrollToEnd();
      } else if (ev.event === "error") {
        failed = true;
        removeTyping();
        dropEmptyAnswer();
        addError(d.message ? String(d.message) : T.error);
      }
    }

    return fetch(BASE + "/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Kbchat-Key": KEY },
      body: JSON.stringify(body),
      signal: controller ? controller.signal : undefined,
    })
      .then(function (response) {
        if (!response.ok) {
          if (response.status === 404 && sessionId) { forgetSession(); sessionId = null; }
          failed = true;
          return errorText(response).then(function (text) {
            removeTyping();
            dropEmptyAnswer();
            addError(text);
          });
        }
        var type = response.headers.get("Content-Type") || "";
        if (!response.body || type.indexOf("text/event-stream") === -1) {
          // A server that ignored stream:true and answered with plain JSON.
          return response.json().then(function (d) {
            if (d && d.answer != null) onEvent({ event: "token", data: { text: d.answer } });
            if (d && d.sources) onEvent({ event: "sources", data: d });
            onEvent({ event: "done", data: d || {} });
          });
        }
        return readStream(response, onEvent);
      })
      .catch(function (err) {
        if (err && err.name === "AbortError") { removeTyping(); dropEmptyAnswer(); return; }
        failed = true;
        removeTyping();
        dropEmptyAnswer();
        addError(T.error);
      })
      .then(function () {
        removeTyping();
        if (!gotText && !failed) dropEmptyAnswer();
        controller = null;
        setStreaming(false);
        scrollToEnd();
        return !failed;
      });
  }

  // ---------------------------------------------------------------- form / keyboard
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (streaming) return;
    var text = input.value;
    if (!text.trim()) return;
    input.value = "";
    autoGrow();
    ask(text);
  });

  input.addEventListener("keydown", function (e) {
    // Enter sends, Shift+Enter inserts a newline; ignore Enter while an IME is composing.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  function autoGrow() {
    input.style.height = "40px";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  }
  input.addEventListener("input", autoGrow);

  // ---------------------------------------------------------------- start
  function mount() {
    document.body.appendChild(host);
    loadHistory();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  window.kbchatWidget = { open: open, close: close, ask: ask };
})();
