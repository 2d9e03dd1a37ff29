/*
 * kbchat embeddable chat widget — one vanilla ES2019 file, no build step.
 *
 * Embed:
 *   <script src="https://HOST/widget.js" data-key="PUBLIC_KEY" async></script>
 * Optional attributes (they override the assistant's configuration): data-title, data-lang (the
 * visitor's language), data-position ("right" | "left"), data-color ("#rrggbb"),
 * data-theme ("auto" | "light" | "dark").
 *
 * The API base URL is the origin of this script's src. Everything lives in a Shadow DOM attached to
 * <div id="kbchat-widget-host">, so host-page CSS cannot break it and its CSS cannot leak. At page
 * load it asks GET /api/widget/config for the assistant's name, avatar, colour, theme,
 * greeting and suggested questions (cached a few minutes in sessionStorage per key); any failure
 * (404 before assistants exist) keeps the defaults.
 *
 * Full-page mode (the server's /a/{assistant} page): data-mode="page" data-assistant="ID" and no
 * key; the chat fills the viewport (see "full-page mode" below).
 *
 * SAFETY. kbchat serves this file wrapped with two vendored libraries (app/server/widget_bundle.py):
 * marked (markdown -> HTML string) and DOMPurify (HTML string -> sanitised DOM fragment), each in
 * its own function scope, reached through KBCHAT_VENDOR, never through page globals.
 *  - The only text parsed is the model's answer (and a support person's message, see "human
 *    handoff"), as markdown, in renderAnswer(). marked is told to escape raw HTML (block and
 *    inline html tokens render as their escaped source, so `<script>` shows as text) and to
 *    render images as their alt text (no image is ever loaded). Its output then goes through a
 *    private DOMPurify instance with an allow-list of tags (p, br, strong, em, del, code, pre,
 *    lists, blockquote, hr, h1-h6, tables, a) and attributes (href, title, align, start);
 *    DOMPurify drops everything else (script, style, svg, math, iframe, img, form, on*
 *    handlers, style attributes). Links keep an href only if it is absolute http(s) (checked by
 *    DOMPurify's URI regexp and again in a hook) and get target="_blank" rel="noopener nofollow".
 *    The result is a DOM fragment (RETURN_DOM_FRAGMENT), never re-serialised to a string.
 *  - Without the libraries (widget.js served alone) the answer is shown as plain text.
 *  - Everything else (questions, sources, passages, titles, the assistant's name, greeting and
 *    suggestions, error messages, the handoff's notices) is built with createElement and filled
 *    with textContent; URLs (avatar, a source's document URL) are accepted only as https/http
 *    (or a same-origin path for the avatar) and set as properties. The only other innerHTML is
 *    the static TEMPLATE.
 *
 * Global API (handy for tests): window.kbchatWidget = { open(), close(), ask(text) }.
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- locate our <script> and config
  var script =
    document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-key]') ||
    document.querySelector('script[src*="widget.js"][data-mode="page"]');
  if (!script) {
    console.warn("kbchat widget: cannot find its own <script> element");
    return;
  }
  var KEY = (script.getAttribute("data-key") || "").trim();
  // ---------------------------------------------------------------- full-page mode (/a/{assistant})
  // The server's own page for an assistant: no key (nothing secret in the page); its requests
  // name the assistant in X-Kbchat-Assistant, which the server honours for same-origin requests
  // only. The chat fills the viewport, always open: no bubble, no close button.
  var PAGE = script.getAttribute("data-mode") === "page";
  var ASSISTANT = PAGE ? String(script.getAttribute("data-assistant") || "").trim() : "";
  if (PAGE && !/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/.test(ASSISTANT)) {
    console.warn('kbchat widget: data-mode="page" needs data-assistant="ASSISTANT_ID"');
    return;
  }
  if (PAGE) KEY = "";
  // The console's preview of this page (see previewConfig): it must not take the focus from
  // the console's form each time it reloads.
  var PREVIEW = PAGE && !!document.getElementById("kbchat-preview-config");
  var ID = PAGE ? "page:" + ASSISTANT : KEY; // names this widget's session and cached config

  /** Who is asking, on every request: the widget key, or the full page's assistant. */
  function authHeaders(headers) {
    headers = headers || {};
    if (PAGE) headers["X-Kbchat-Assistant"] = ASSISTANT;
    else headers["X-Kbchat-Key"] = KEY;
    return headers;
  }
  if (!PAGE && (!KEY || KEY === "{{WIDGET_KEY}}")) {
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
  var STORAGE_KEY = "kbchat:" + ID + ":session";
  var VENDOR = typeof KBCHAT_VENDOR === "object" && KBCHAT_VENDOR ? KBCHAT_VENDOR : null;
  var COLOR = /^#[0-9a-fA-F]{6}$/;

  /** A data-* override: a trimmed, bounded string, or "" when absent. */
  function attr(name) { return String(script.getAttribute("data-" + name) || "").trim().slice(0, 200); }

  // ---------------------------------------------------------------- interface strings
  // Every string the visitor can see or hear (labels included), in the 11 interface languages.
  var STRINGS = {
    en: { title: "Ask us", open: "Open chat", close: "Close chat", placeholder: "Ask a question…",
      send: "Send", thinking: "Thinking…", error: "Sorry, something went wrong. Please try again.",
      rateLimited: "Too many requests. Try again in {s} s.", sources: "Sources",
      up: "Helpful", down: "Not helpful", thanks: "Thanks for your feedback!",
      newChat: "New conversation", hello: "Hi! How can I help you?", stop: "Stop",
      stopped: "Stopped", copy: "Copy answer", copied: "Copied", more: "More sources ({n})",
      less: "Fewer sources", back: "Back", language: "Language", page: "page",
      openDoc: "Open the document", cite: "Source {n}", suggested: "Suggested questions" },
    de: { title: "Fragen Sie uns", open: "Chat öffnen", close: "Chat schließen",
      placeholder: "Stellen Sie eine Frage…", send: "Senden", thinking: "Denke nach…",
      error: "Leider ist ein Fehler aufgetreten. Bitte versuchen Sie es erneut.",
      rateLimited: "Zu viele Anfragen. Bitte in {s} s erneut versuchen.", sources: "Quellen",
      up: "Hilfreich", down: "Nicht hilfreich", thanks: "Danke für Ihr Feedback!",
      newChat: "Neues Gespräch", hello: "Hallo! Wie kann ich Ihnen helfen?", stop: "Stopp",
      stopped: "Abgebrochen", copy: "Antwort kopieren", copied: "Kopiert",
      more: "Weitere Quellen ({n})", less: "Weniger Quellen", back: "Zurück", language: "Sprache",
      page: "Seite", openDoc: "Dokument öffnen", cite: "Quelle {n}",
      suggested: "Vorgeschlagene Fragen" },
    es: { title: "Pregúntanos", open: "Abrir chat", close: "Cerrar chat",
      placeholder: "Haz una pregunta…", send: "Enviar", thinking: "Pensando…",
      error: "Lo sentimos, algo salió mal. Inténtalo de nuevo.",
      rateLimited: "Demasiadas solicitudes. Inténtalo de nuevo en {s} s.", sources: "Fuentes",
      up: "Útil", down: "No útil", thanks: "¡Gracias por tu opinión!",
      newChat: "Nueva conversación", hello: "¡Hola! ¿En qué puedo ayudarte?", stop: "Detener",
      stopped: "Detenido", copy: "Copiar respuesta", copied: "Copiado",
      more: "Más fuentes ({n})", less: "Menos fuentes", back: "Volver", language: "Idioma",
      page: "página", openDoc: "Abrir el documento", cite: "Fuente {n}",
      suggested: "Preguntas sugeridas" },
    fr: { title: "Posez-nous une question", open: "Ouvrir le chat", close: "Fermer le chat",
      placeholder: "Posez une question…", send: "Envoyer", thinking: "Réflexion…",
      error: "Désolé, une erreur s’est produite. Veuillez réessayer.",
      rateLimited: "Trop de requêtes. Réessayez dans {s} s.", sources: "Sources",
      up: "Utile", down: "Pas utile", thanks: "Merci pour votre retour !",
      newChat: "Nouvelle conversation", hello: "Bonjour ! Comment puis-je vous aider ?",
      stop: "Arrêter", stopped: "Interrompu", copy: "Copier la réponse", copied: "Copié",
      more: "Autres sources ({n})", less: "Moins de sources", back: "Retour", language: "Langue",
      page: "page", openDoc: "Ouvrir le document", cite: "Source {n}",
      suggested: "Questions suggérées" },
    it: { title: "Chiedi a noi", open: "Apri la chat", close: "Chiudi la chat",
      placeholder: "Fai una domanda…", send: "Invia", thinking: "Sto pensando…",
      error: "Spiacenti, si è verificato un errore. Riprova.",
      rateLimited: "Troppe richieste. Riprova tra {s} s.", sources: "Fonti",
      up: "Utile", down: "Non utile", thanks: "Grazie per il feedback!",
      newChat: "Nuova conversazione", hello: "Ciao! Come posso aiutarti?", stop: "Interrompi",
      stopped: "Interrotto", copy: "Copia la risposta", copied: "Copiato",
      more: "Altre fonti ({n})", less: "Meno fonti", back: "Indietro", language: "Lingua",
      page: "pagina", openDoc: "Apri il documento", cite: "Fonte {n}",
      suggested: "Domande suggerite" },
    pt: { title: "Pergunte-nos", open: "Abrir chat", close: "Fechar chat",
      placeholder: "Faça uma pergunta…", send: "Enviar", thinking: "Pensando…",
      error: "Desculpe, algo deu errado. Tente novamente.",
      rateLimited: "Muitas solicitações. Tente novamente em {s} s.", sources: "Fontes",
      up: "Útil", down: "Não útil", thanks: "Obrigado pelo seu feedback!",
      newChat: "Nova conversa", hello: "Olá! Como posso ajudar?", stop: "Parar",
      stopped: "Interrompido", copy: "Copiar resposta", copied: "Copiado",
      more: "Mais fontes ({n})", less: "Menos fontes", back: "Voltar", language: "Idioma",
      page: "página", openDoc: "Abrir o documento", cite: "Fonte {n}",
      suggested: "Perguntas sugeridas" },
    nl: { title: "Vraag het ons", open: "Chat openen", close: "Chat sluiten",
      placeholder: "Stel een vraag…", send: "Verzenden", thinking: "Even denken…",
      error: "Sorry, er ging iets mis. Probeer het opnieuw.",
      rateLimited: "Te veel verzoeken. Probeer het over {s} s opnieuw.", sources: "Bronnen",
      up: "Nuttig", down: "Niet nuttig", thanks: "Bedankt voor je feedback!",
      newChat: "Nieuw gesprek", hello: "Hallo! Waarmee kan ik je helpen?", stop: "Stoppen",
      stopped: "Gestopt", copy: "Antwoord kopiëren", copied: "Gekopieerd",
      more: "Meer bronnen ({n})", less: "Minder bronnen", back: "Terug", language: "Taal",
      page: "pagina", openDoc: "Document openen", cite: "Bron {n}",
      suggested: "Voorgestelde vragen" },
    ru: { title: "Спросите нас", open: "Открыть чат", close: "Закрыть чат",
      placeholder: "Задайте вопрос…", send: "Отправить", thinking: "Думаю…",
      error: "Извините, что-то пошло не так. Попробуйте ещё раз.",
      rateLimited: "Слишком много запросов. Повторите через {s} с.", sources: "Источники",
      up: "Полезно", down: "Бесполезно", thanks: "Спасибо за отзыв!",
      newChat: "Новый разговор", hello: "Здравствуйте! Чем могу помочь?", stop: "Остановить",
      stopped: "Остановлено", copy: "Копировать ответ", copied: "Скопировано",
      more: "Другие источники ({n})", less: "Меньше источников", back: "Назад", language: "Язык",
      page: "страница", openDoc: "Открыть документ", cite: "Источник {n}",
      suggested: "Предлагаемые вопросы" },
    zh: { title: "向我们提问", open: "打开聊天", close: "关闭聊天", placeholder: "请输入问题…",
      send: "发送", thinking: "正在思考…", error: "抱歉，出了点问题。请重试。",
      rateLimited: "请求过多。请在 {s} 秒后重试。", sources: "来源",
      up: "有帮助", down: "没有帮助", thanks: "感谢您的反馈！", newChat: "新对话",
      hello: "您好！有什么可以帮您？", stop: "停止", stopped: "已停止", copy: "复制回答",
      copied: "已复制", more: "更多来源（{n}）", less: "收起来源", back: "返回", language: "语言",
      page: "页", openDoc: "打开文档", cite: "来源 {n}", suggested: "推荐问题" },
    ja: { title: "お問い合わせ", open: "チャットを開く", close: "チャットを閉じる",
      placeholder: "質問を入力…", send: "送信", thinking: "考え中…",
      error: "申し訳ありません。エラーが発生しました。もう一度お試しください。",
      rateLimited: "リクエストが多すぎます。{s} 秒後にもう一度お試しください。", sources: "出典",
      up: "役に立った", down: "役に立たなかった", thanks: "フィードバックありがとうございます！",
      newChat: "新しい会話", hello: "こんにちは！どのようなご用件でしょうか？", stop: "停止",
      stopped: "停止しました", copy: "回答をコピー", copied: "コピーしました",
      more: "その他の出典（{n}）", less: "出典を閉じる", back: "戻る", language: "言語",
      page: "ページ", openDoc: "文書を開く", cite: "出典 {n}", suggested: "おすすめの質問" },
    ar: { title: "اسألنا", open: "فتح المحادثة", close: "إغلاق المحادثة",
      placeholder: "اطرح سؤالاً…", send: "إرسال", thinking: "جارٍ التفكير…",
      error: "عذرًا، حدث خطأ ما. يرجى المحاولة مرة أخرى.",
      rateLimited: "طلبات كثيرة جدًا. حاول مرة أخرى بعد {s} ثانية.", sources: "المصادر",
      up: "مفيد", down: "غير مفيد", thanks: "شكرًا على ملاحظاتك!", newChat: "محادثة جديدة",
      hello: "مرحبًا! كيف يمكنني مساعدتك؟", stop: "إيقاف", stopped: "تم الإيقاف",
      copy: "نسخ الإجابة", copied: "تم النسخ", more: "مصادر أخرى ({n})", less: "مصادر أقل",
      back: "رجوع", language: "اللغة", page: "صفحة", openDoc: "فتح المستند", cite: "المصدر {n}",
      suggested: "أسئلة مقترحة" },
  };
  var RTL = { ar: true, he: true, fa: true, ur: true };

  var VISITOR_LANG = (attr("lang") || navigator.language || "en").slice(0, 2).toLowerCase();
  var LANG = STRINGS[VISITOR_LANG] ? VISITOR_LANG : "en";
  var T = STRINGS[LANG];
  var DIR = RTL[VISITOR_LANG] ? "rtl" : "ltr";

  // ---------------------------------------------------------------- small helpers
  /** createElement + class + textContent: the way dynamic text enters the DOM. */
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text);
    return node;
  }

  function button(className, text, label) {
    var b = el("button", className, text);
    b.type = "button";
    if (label) { b.setAttribute("aria-label", label); b.title = label; }
    return b;
  }

  // Static icon paths (24x24), drawn as SVG so they look the same without an emoji font.
  var ICONS = {
    copy: "M16 1H4a2 2 0 0 0-2 2v14h2V3h12V1zm3 4H8a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h11a2 2 0 0 0 " +
      "2-2V7a2 2 0 0 0-2-2zm0 16H8V7h11v14z",
    up: "M1 21h4V9H1v12zm22-11a2 2 0 0 0-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 " +
      "1 7.59 7.59C7.22 7.95 7 8.45 7 9v10a2 2 0 0 0 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09" +
      "-.23.14-.47.14-.73v-2z",
    down: "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2a2 2 0 0 0 2 2h6.31l" +
      "-.95 4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5a2 2 0 0 " +
      "0-2-2zm4 0v12h4V3h-4z",
  };

  function icon(path) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }

  function fmt(template, n) { return String(template).replace("{n}", String(n)); }

  function basename(path) {
    var parts = String(path || "").split(/[\\/]/);
    return parts[parts.length - 1] || String(path || "");
  }

  /** An absolute http(s) URL as a string, or "" (javascript:, data:, relative… are refused). */
  function webUrl(value) {
    var s = String(value || "").trim();
    // 2048: what ingestion keeps (ingestion/doc_url.py MAX_URL_CHARS)
    if (!/^https?:\/\//i.test(s) || s.length > 2048) return "";
    try { return new URL(s).href; } catch (e) { return ""; }
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
  // Colours are custom properties: --kb-accent comes from the assistant's configuration (checked
  // against #rrggbb), the rest from the light or dark theme (.theme-dark on the root).
  var CSS = [
    ":host { all: initial; }",
    // The host <div> lives in the page, so hostile `div { ... !important }` rules reach it; an
    // !important declaration from inside the shadow tree wins over the page's !important ones.
    ":host { all: initial !important; display: block !important; }",
    ".kbchat-root { --kb-accent: #2563eb; --kb-on-accent: #ffffff; --kb-bg: #ffffff;",
    "  --kb-fg: #1f2328; --kb-muted: #57606a; --kb-border: #d0d7de; --kb-canvas: #f6f8fa;",
    "  --kb-code: #eff1f3; --kb-link: #0969da; --kb-error-bg: #fff1f0; --kb-error-fg: #a8071a;",
    "  --kb-error-border: #ffa39e; --kb-chip-bg: #ffffff; }",
    ".kbchat-root.theme-dark { --kb-bg: #1c2128; --kb-fg: #e6edf3; --kb-muted: #9da7b3;",
    "  --kb-border: #3d444d; --kb-canvas: #0d1117; --kb-code: #2d333b; --kb-link: #6cb6ff;",
    "  --kb-error-bg: #3b1219; --kb-error-fg: #ffb3ae; --kb-error-border: #8e1519;",
    "  --kb-chip-bg: #1c2128; color-scheme: dark; }",
    ".kbchat-root, .kbchat-root * { box-sizing: border-box; font-family: system-ui, -apple-system,",
    "  'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; font-size: 14px; line-height: 20px;",
    "  color: var(--kb-fg); letter-spacing: normal; text-transform: none; font-style: normal;",
    "  font-weight: 400; text-shadow: none; }",
    ".kbchat-root { position: fixed; bottom: 20px; z-index: 2147483000; display: block;",
    "  margin: 0; padding: 0; border: 0; }",
    ".kbchat-root.pos-right { right: 20px; } .kbchat-root.pos-left { left: 20px; }",
    "button { display: inline-flex; align-items: center; justify-content: center; cursor: pointer;",
    "  margin: 0; border: 0; background: transparent; visibility: visible; opacity: 1; }",
    "button:focus-visible, textarea:focus-visible, a:focus-visible {",
    "  outline: 3px solid var(--kb-accent); outline-offset: 2px; }",
    "button:disabled { cursor: default; opacity: 0.5; }",
    "[hidden] { display: none !important; }",
    ".kbchat-bubble { width: 56px; height: 56px; border-radius: 28px; padding: 0;",
    "  background: var(--kb-accent); box-shadow: 0 4px 14px rgba(0,0,0,0.25); }",
    ".kbchat-bubble:hover { filter: brightness(0.92); }",
    ".kbchat-bubble svg { width: 26px; height: 26px; fill: var(--kb-on-accent); display: block; }",
    ".kbchat-panel { position: absolute; bottom: 72px; width: 380px; height: 560px;",
    "  max-width: calc(100vw - 40px); max-height: calc(100vh - 110px); display: flex;",
    "  flex-direction: column; background: var(--kb-bg); border: 1px solid var(--kb-border);",
    "  border-radius: 12px; box-shadow: 0 10px 30px rgba(0,0,0,0.25); overflow: hidden;",
    "  text-align: start; }",
    ".pos-right .kbchat-panel { right: 0; } .pos-left .kbchat-panel { left: 0; }",
    ".kbchat-header { display: flex; align-items: center; gap: 6px; padding-block: 10px;",
    "  padding-inline: 14px 10px; background: var(--kb-accent); }",
    ".kbchat-avatar { width: 32px; height: 32px; border-radius: 16px; object-fit: cover;",
    "  background: var(--kb-bg); flex: 0 0 auto; }",
    ".kbchat-title { flex: 1 1 auto; margin: 0; font-size: 16px; line-height: 22px; font-weight: 600;",
    "  color: var(--kb-on-accent); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }",
    ".kbchat-header button { width: 32px; height: 32px; border-radius: 6px;",
    "  color: var(--kb-on-accent); font-size: 18px; line-height: 18px; padding: 0; }",
    ".kbchat-header button:hover { background: rgba(127,127,127,0.25); }",
    ".kbchat-header button:focus-visible { outline-color: var(--kb-on-accent); outline-offset: -3px; }",
    ".kbchat-body { position: relative; flex: 1 1 auto; display: flex; min-height: 0; }",
    ".kbchat-messages { flex: 1 1 auto; overflow-y: auto; padding: 12px; display: flex;",
    "  flex-direction: column; gap: 10px; background: var(--kb-canvas); }",
    ".kbchat-msg, .kbchat-greeting { max-width: 88%; padding: 8px 12px; border-radius: 12px;",
    "  overflow-wrap: anywhere; word-break: normal; }",
    ".kbchat-msg-user { align-self: flex-end; background: var(--kb-accent); white-space: pre-wrap; }",
    ".kbchat-msg-user, .kbchat-msg-user * { color: var(--kb-on-accent); }",
    ".kbchat-msg-assistant, .kbchat-greeting { align-self: flex-start; background: var(--kb-bg);",
    "  border: 1px solid var(--kb-border); }",
    ".kbchat-msg-error { align-self: stretch; max-width: 100%; background: var(--kb-error-bg);",
    "  border: 1px solid var(--kb-error-border); }",
    ".kbchat-msg-error, .kbchat-msg-error * { color: var(--kb-error-fg); }",
    ".kbchat-text { display: block; color: inherit; }",
    ".kbchat-text.plain { white-space: pre-wrap; }",
    ".kbchat-text > :first-child { margin-top: 0; } .kbchat-text > :last-child { margin-bottom: 0; }",
    ".kbchat-text p, .kbchat-text ul, .kbchat-text ol, .kbchat-text pre, .kbchat-text blockquote,",
    "  .kbchat-text .kbchat-table { margin: 0 0 8px 0; }",
    ".kbchat-text ul, .kbchat-text ol { padding-inline-start: 20px; padding-inline-end: 0; }",
    ".kbchat-text ul { list-style: disc; } .kbchat-text ol { list-style: decimal; }",
    ".kbchat-text li { display: list-item; margin: 2px 0; }",
    ".kbchat-text strong, .kbchat-text b, .kbchat-text strong *, .kbchat-text th { font-weight: 700; }",
    ".kbchat-text em, .kbchat-text i { font-style: italic; }",
    ".kbchat-text del { text-decoration: line-through; }",
    ".kbchat-text h1, .kbchat-text h2, .kbchat-text h3, .kbchat-text h4, .kbchat-text h5,",
    "  .kbchat-text h6 { font-size: 15px; font-weight: 700; margin: 8px 0 4px 0; }",
    ".kbchat-text a[href] { color: var(--kb-link); text-decoration: underline; }",
    ".kbchat-text code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;",
    "  font-size: 13px; background: var(--kb-code); border-radius: 4px; padding: 1px 4px; }",
    ".kbchat-text pre { background: var(--kb-code); border-radius: 6px; padding: 8px;",
    "  overflow-x: auto; white-space: pre; direction: ltr; text-align: left; }",
    ".kbchat-text pre code { padding: 0; background: transparent; }",
    ".kbchat-text blockquote { border-inline-start: 3px solid var(--kb-border); padding-inline-start: 8px;",
    "  color: var(--kb-muted); }",
    ".kbchat-text hr { border: 0; border-top: 1px solid var(--kb-border); margin: 8px 0; }",
    ".kbchat-table { overflow-x: auto; }",
    ".kbchat-text table { border-collapse: collapse; }",
    ".kbchat-text th, .kbchat-text td { border: 1px solid var(--kb-border); padding: 3px 6px;",
    "  text-align: start; vertical-align: top; }",
    ".kbchat-cite { display: inline-flex; min-width: 18px; height: 18px; padding: 0 4px;",
    "  margin: 0 1px; border-radius: 9px; font-size: 11px; line-height: 18px; font-weight: 600;",
    "  vertical-align: 2px; background: var(--kb-code); color: var(--kb-link); }",
    "button.kbchat-cite:hover { background: var(--kb-border); }",
    ".kbchat-stopped { display: block; margin-top: 4px; font-size: 12px; color: var(--kb-muted); }",
    ".kbchat-typing { display: inline-flex; gap: 4px; align-items: center; height: 20px; }",
    ".kbchat-typing i { display: block; width: 7px; height: 7px; border-radius: 4px;",
    "  background: var(--kb-muted); animation: kbchat-dot 1.2s infinite ease-in-out; }",
    ".kbchat-typing i:nth-child(2) { animation-delay: 0.2s; }",
    ".kbchat-typing i:nth-child(3) { animation-delay: 0.4s; }",
    "@keyframes kbchat-dot { 0%, 60%, 100% { opacity: 0.3; transform: translateY(0); }",
    "  30% { opacity: 1; transform: translateY(-4px); } }",
    "@media (prefers-reduced-motion: reduce) { .kbchat-typing i { animation: none; opacity: 0.7; } }",
    ".kbchat-sr { position: absolute; width: 1px; height: 1px; overflow: hidden;",
    "  clip: rect(0 0 0 0); white-space: nowrap; }",
    ".kbchat-sources-block { margin-top: 8px; }",
    ".kbchat-sources-heading { display: block; font-size: 12px; line-height: 16px;",
    "  font-weight: 600; color: var(--kb-muted); }",
    ".kbchat-sources, .kbchat-sources-more { list-style: none; margin: 2px 0 0 0; padding: 0; }",
    ".kbchat-sources li, .kbchat-sources-more li { display: block; margin: 0; padding: 0; }",
    ".kbchat-source { display: block; width: 100%; padding: 1px 0; font-size: 12px; line-height: 16px;",
    "  color: var(--kb-link); text-align: start; white-space: nowrap; overflow: hidden;",
    "  text-overflow: ellipsis; }",
    ".kbchat-source:hover { text-decoration: underline; }",
    ".kbchat-source bdi, .kbchat-text a[href] * { color: inherit; font-weight: inherit;",
    "  font-size: inherit; line-height: inherit; }",
    ".kbchat-source.cited { font-weight: 600; }",
    ".kbchat-more { font-size: 12px; line-height: 16px; padding: 2px 0; color: var(--kb-muted);",
    "  text-decoration: underline; }",
    ".kbchat-actions { display: flex; align-items: center; gap: 4px; margin-top: 6px;",
    "  flex-wrap: wrap; }",
    ".kbchat-feedback { display: flex; align-items: center; gap: 4px; }",
    ".kbchat-actions button { min-width: 30px; height: 26px; border-radius: 6px; padding: 0 6px;",
    "  border: 1px solid var(--kb-border); background: var(--kb-bg); font-size: 13px; }",
    ".kbchat-actions svg { width: 15px; height: 15px; fill: var(--kb-muted); display: block; }",
    ".kbchat-feedback button.chosen svg { fill: var(--kb-accent); }",
    ".kbchat-actions button:hover:not(:disabled) { background: var(--kb-code); }",
    ".kbchat-feedback button.chosen { border-color: var(--kb-accent); opacity: 1; }",
    ".kbchat-thanks, .kbchat-copied { font-size: 12px; line-height: 16px; color: var(--kb-muted); }",
    ".kbchat-chips { display: flex; flex-wrap: wrap; gap: 6px; align-self: stretch; }",
    ".kbchat-chip { padding: 6px 10px; border-radius: 16px; border: 1px solid var(--kb-accent);",
    "  background: var(--kb-chip-bg); color: var(--kb-fg); text-align: start; }",
    ".kbchat-chip:hover { background: var(--kb-code); }",
    ".kbchat-passage { position: absolute; inset: 0; display: flex; flex-direction: column;",
    "  background: var(--kb-bg); overflow-y: auto; padding: 12px; gap: 6px; }",
    ".kbchat-passage-back { align-self: flex-start; padding: 4px 8px; border-radius: 6px;",
    "  border: 1px solid var(--kb-border); }",
    ".kbchat-passage-title { margin: 4px 0 0 0; font-size: 15px; font-weight: 700; }",
    ".kbchat-passage-meta { font-size: 12px; color: var(--kb-muted); overflow-wrap: anywhere; }",
    ".kbchat-passage-text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere;",
    "  border-inline-start: 3px solid var(--kb-accent); padding-inline-start: 10px; }",
    ".kbchat-passage a { color: var(--kb-link); text-decoration: underline; }",
    ".kbchat-form { display: flex; align-items: flex-end; gap: 8px; padding: 10px;",
    "  border-top: 1px solid var(--kb-border); background: var(--kb-bg); margin: 0; }",
    ".kbchat-input { flex: 1 1 auto; resize: none; height: 40px; max-height: 120px; margin: 0;",
    "  padding: 9px 10px; border: 1px solid var(--kb-border); border-radius: 8px;",
    "  background: var(--kb-bg); display: block; text-align: start; }",
    ".kbchat-input::placeholder { color: var(--kb-muted); opacity: 1; }",
    ".kbchat-send, .kbchat-stop { height: 40px; padding: 0 14px; border-radius: 8px;",
    "  background: var(--kb-accent); font-weight: 600; }",
    ".kbchat-send, .kbchat-stop, .kbchat-stop * { color: var(--kb-on-accent); }",
    ".kbchat-send:hover:not(:disabled), .kbchat-stop:hover { filter: brightness(0.92); }",
    // Phones: the open panel takes the whole screen and the launcher hides behind it.
    "@media (max-width: 480px) {",
    "  .kbchat-root.is-open { inset: 0; }",
    "  .kbchat-root.is-open .kbchat-panel { position: fixed; inset: 0; width: 100%; height: 100%;",
    "    max-width: none; max-height: none; border: 0; border-radius: 0; }",
    "  .kbchat-root.is-open .kbchat-bubble { display: none; }",
    "}",
  ].join("\n");

  // ---------------------------------------------------------------- full-page layout
  // The panel fills the viewport; on wide screens the conversation keeps a readable width.
  var PAGE_CSS = [
    ".kbchat-root.mode-page { position: fixed; inset: 0; }",
    ".mode-page .kbchat-panel { position: absolute; inset: 0; width: 100%; height: 100%;",
    "  max-width: none; max-height: none; border: 0; border-radius: 0; box-shadow: none; }",
    ".mode-page .kbchat-bubble, .mode-page .kbchat-close { display: none !important; }",
    ".mode-page .kbchat-header { padding-block: 12px; padding-inline:",
    "  max(14px, calc((100% - 800px) / 2)) max(10px, calc((100% - 800px) / 2)); }",
    ".mode-page .kbchat-title { font-size: 18px; line-height: 24px; }",
    ".mode-page .kbchat-messages, .mode-page .kbchat-passage {",
    "  padding-inline: max(12px, calc((100% - 800px) / 2)); }",
    ".mode-page .kbchat-form { padding-inline: max(10px, calc((100% - 800px) / 2)); }",
  ].join("\n");

  /** A constructed stylesheet where the browser has them, so a page whose Content-Security-Policy
   *  forbids inline styles (the full page's does) still styles the widget; else a <style>. */
  function addStyles(shadowRoot, css) {
    try {
      if (typeof CSSStyleSheet === "function" && "adoptedStyleSheets" in shadowRoot) {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(css);
        shadowRoot.adoptedStyleSheets = shadowRoot.adoptedStyleSheets.concat([sheet]);
        return;
      }
    } catch (e) { /* an older browser: the <style> below */ }
    var style = document.createElement("style");
    style.textContent = css;
    shadowRoot.appendChild(style);
  }

  // Static markup only: labels, titles and placeholders are filled in afterwards via properties.
  var TEMPLATE =
    '<div class="kbchat-root">' +
    '  <div class="kbchat-panel" role="dialog" hidden>' +
    '    <div class="kbchat-header">' +
    '      <h2 class="kbchat-title"></h2>' +
    '      <button type="button" class="kbchat-new">&#x21bb;</button>' +
    '      <button type="button" class="kbchat-close">&#x2715;</button>' +
    "    </div>" +
    '    <div class="kbchat-body">' +
    '      <div class="kbchat-messages" role="log" aria-live="polite"></div>' +
    '      <div class="kbchat-passage" role="region" hidden></div>' +
    "    </div>" +
    '    <form class="kbchat-form" novalidate>' +
    '      <textarea class="kbchat-input" rows="1"></textarea>' +
    '      <button type="submit" class="kbchat-send"></button>' +
    '      <button type="button" class="kbchat-stop" hidden></button>' +
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
  addStyles(shadow, PAGE ? CSS + "\n" + PAGE_CSS : CSS);
  var holder = document.createElement("div");
  holder.innerHTML = TEMPLATE; // static template, no dynamic data
  var root = holder.firstElementChild;
  shadow.appendChild(root);

  function q(selector) { return root.querySelector(selector); }
  var panel = q(".kbchat-panel");
  var avatarImg = null; // created only for an assistant that has an avatar
  var titleEl = q(".kbchat-title");
  var newBtn = q(".kbchat-new");
  var closeBtn = q(".kbchat-close");
  var messages = q(".kbchat-messages");
  var passage = q(".kbchat-passage");
  var form = q(".kbchat-form");
  var input = q(".kbchat-input");
  var sendBtn = q(".kbchat-send");
  var stopBtn = q(".kbchat-stop");
  var bubble = q(".kbchat-bubble");

  panel.setAttribute("lang", VISITOR_LANG);
  panel.setAttribute("dir", DIR);
  newBtn.setAttribute("aria-label", T.newChat);
  newBtn.title = T.newChat;
  closeBtn.setAttribute("aria-label", T.close);
  closeBtn.title = T.close;
  input.setAttribute("placeholder", T.placeholder);
  input.setAttribute("aria-label", T.placeholder);
  sendBtn.textContent = T.send;
  stopBtn.appendChild(el("span", "", "\u25A0 " + T.stop));
  stopBtn.setAttribute("aria-label", T.stop);
  bubble.setAttribute("aria-label", T.open);

  // ---------------------------------------------------------------- the assistant's configuration
  // What GET /api/widget/config may set; every field is checked before use, data-* attributes win.
  var cfg = { name: "", avatar: "", color: "#2563eb", position: "right", theme: "auto",
    greeting: "", suggestions: [] };
  var THEMES = { auto: true, light: true, dark: true };
  var darkQuery = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function own(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

  /** dict[visitor language] or dict[default language] or dict.en (undefined when none). */
  function pickLanguage(dict, fallback) {
    if (!dict || typeof dict !== "object" || Array.isArray(dict)) return undefined;
    var order = [VISITOR_LANG, fallback, "en"];
    for (var i = 0; i < order.length; i++) if (own(dict, order[i])) return dict[order[i]];
    return undefined;
  }

  /** The avatar: a path on the kbchat server or an https URL; anything else is dropped. */
  function avatarUrl(value) {
    var s = typeof value === "string" ? value.trim() : "";
    if (/^\/(?!\/)/.test(s) && s.length <= 500) return webUrl(BASE + s);
    return /^https:\/\//i.test(s) ? webUrl(s) : "";
  }

  /** White or near-black, whichever reads better on the accent colour (WCAG contrast ratio). */
  function onAccent(hex) {
    var lum = [1, 3, 5].map(function (i) {
      var c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var l = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
    return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? "#ffffff" : "#111111";
  }

  function applyConfig(c) {
    c = c && typeof c === "object" ? c : {};
    var fallback = typeof c.default_language === "string" ? c.default_language.slice(0, 8) : "en";
    if (typeof c.name === "string") cfg.name = c.name.trim().slice(0, 80);
    if (typeof c.color === "string" && COLOR.test(c.color)) cfg.color = c.color;
    if (c.position === "left" || c.position === "right") cfg.position = c.position;
    if (typeof c.theme === "string" && own(THEMES, c.theme)) cfg.theme = c.theme;
    cfg.avatar = avatarUrl(c.avatar);
    var greeting = pickLanguage(c.greeting, fallback);
    cfg.greeting = typeof greeting === "string" ? greeting.trim().slice(0, 1000) : "";
    var chips = pickLanguage(c.suggestions, fallback);
    cfg.suggestions = (Array.isArray(chips) ? chips : [])
      .filter(function (s) { return typeof s === "string" && s.trim(); })
      .slice(0, 6)
      .map(function (s) { return s.trim().slice(0, 200); });
    draw();
    applyLeadConfig(c); // lead capture section
    applyHandoffConfig(c); // handoff section
  }

  function applyTheme() {
    var theme = own(THEMES, attr("theme")) ? attr("theme") : cfg.theme;
    var dark = theme === "dark" || (theme === "auto" && !!darkQuery && darkQuery.matches);
    root.classList.toggle("theme-dark", dark);
  }
  if (darkQuery) {
    if (darkQuery.addEventListener) darkQuery.addEventListener("change", applyTheme);
    else if (darkQuery.addListener) darkQuery.addListener(applyTheme);
  }

  /** Name, avatar, colour, position and theme from cfg and the data-* overrides. */
  function draw() {
    var position = attr("position") === "left" || attr("position") === "right"
      ? attr("position") : cfg.position;
    root.classList.remove("pos-left", "pos-right");
    root.classList.add("pos-" + position);
    var color = COLOR.test(attr("color")) ? attr("color") : cfg.color;
    root.style.setProperty("--kb-accent", color);
    root.style.setProperty("--kb-on-accent", onAccent(color));
    applyTheme();
    var title = attr("title") || cfg.name || T.title;
    titleEl.textContent = title;
    titleEl.setAttribute("dir", "auto");
    panel.setAttribute("aria-label", title);
    if (cfg.avatar && !avatarImg) {
      avatarImg = el("img", "kbchat-avatar");
      avatarImg.alt = "";
      avatarImg.referrerPolicy = "no-referrer";
      avatarImg.addEventListener("error", function () { avatarImg.hidden = true; });
      titleEl.parentNode.insertBefore(avatarImg, titleEl);
    }
    if (avatarImg) {
      avatarImg.hidden = !cfg.avatar;
      if (cfg.avatar) avatarImg.src = cfg.avatar;
    }
  }
  draw();

  var configLoaded = null; // the Promise of the one config request
  function loadConfig() {
    if (!configLoaded) {
      var cached = previewConfig() || cachedConfig();
      configLoaded = cached ? Promise.resolve(cached).then(applyConfig) :
        fetch(BASE + "/api/widget/config", { headers: authHeaders() })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (c) { if (c && typeof c === "object") cacheConfig(c); return c; })
          .catch(function () { return null; }) // 404 before assistants exist, offline: defaults
          .then(applyConfig);
    }
    return configLoaded;
  }

  // The config is asked for at page load (the closed bubble wears the assistant's colour and
  // position), once per CONFIG_TTL_MS per key and tab: other pages of the site reuse it.
  var CONFIG_TTL_MS = 5 * 60 * 1000;
  var CONFIG_KEY = "kbchat:" + ID + ":config";
  function cachedConfig() {
    try {
      var saved = JSON.parse(sessionStorage.getItem(CONFIG_KEY) || "null");
      var age = saved && typeof saved.at === "number" ? Date.now() - saved.at : -1;
      if (age >= 0 && age < CONFIG_TTL_MS && saved.config && typeof saved.config === "object") {
        return saved.config;
      }
    } catch (e) { /* storage blocked or garbage: ask the server */ }
    return null;
  }
  /** The console's preview (/a/ID?preview=...) carries the config inline as a JSON data block:
   * the assistant as just saved, never a cached copy, and never cached itself. */
  function previewConfig() {
    var node = PAGE ? document.getElementById("kbchat-preview-config") : null;
    if (!node || node.type !== "application/json") return null;
    try {
      var c = JSON.parse(node.textContent || "");
      return c && typeof c === "object" && !Array.isArray(c) ? c : null;
    } catch (e) { return null; }
  }
  function cacheConfig(config) {
    try {
      sessionStorage.setItem(CONFIG_KEY, JSON.stringify({ at: Date.now(), config: config }));
    } catch (e) { /* private mode or full: fine, one request per page */ }
  }

  // ---------------------------------------------------------------- greeting and suggestions
  function hasTurns() { return !!messages.querySelector(".kbchat-msg"); }

  function removeChips() {
    var chips = messages.querySelector(".kbchat-chips");
    if (chips) chips.parentNode.removeChild(chips);
  }

  /** The greeting on top of the conversation, and the suggested questions until the first one. */
  function renderIntro() {
    Array.prototype.slice.call(messages.querySelectorAll(".kbchat-intro")).forEach(function (n) {
      n.parentNode.removeChild(n);
    });
    var first = messages.firstChild;
    var greeting = el("div", "kbchat-greeting kbchat-intro", cfg.greeting || T.hello);
    greeting.setAttribute("dir", "auto");
    messages.insertBefore(greeting, first);
    if (!cfg.suggestions.length || hasTurns()) return;
    var chips = el("div", "kbchat-chips kbchat-intro");
    chips.setAttribute("role", "group");
    chips.setAttribute("aria-label", T.suggested);
    cfg.suggestions.forEach(function (text) {
      var chip = button("kbchat-chip", text);
      chip.setAttribute("dir", "auto");
      chip.addEventListener("click", function () { ask(text); });
      chips.appendChild(chip);
    });
    messages.insertBefore(chips, first);
  }

  // ---------------------------------------------------------------- state
  var sessionId = storedSession();
  var streaming = false;
  var controller = null; // AbortController of the running request
  var introShown = false;

  // ---------------------------------------------------------------- open / close / keyboard
  function isOpen() { return !panel.hidden; }

  function open() {
    panel.hidden = false;
    root.classList.add("is-open");
    bubble.setAttribute("aria-expanded", "true");
    bubble.setAttribute("aria-label", T.close);
    if (!introShown) {
      introShown = true;
      loadConfig().then(function () { renderIntro(); scrollToEnd(); });
    }
    scrollToEnd();
    // a lead form already shown (the config came at page load) takes the focus first
    var leadFirst = leadView ? leadView.querySelector("input") : null;
    if (!PREVIEW) (leadFirst || input).focus();
  }

  function close() {
    if (PAGE) return; // the full page has nothing to close to
    hidePassage(false);
    panel.hidden = true;
    root.classList.remove("is-open");
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-label", T.open);
    bubble.focus();
  }

  bubble.addEventListener("click", function () { if (isOpen()) close(); else open(); });
  closeBtn.addEventListener("click", close);
  root.addEventListener("keydown", function (e) {
    if (e.key !== "Escape" || !isOpen()) return;
    e.preventDefault();
    if (!passage.hidden) hidePassage(true);
    else close();
  });

  /** The open panel keeps the focus: Tab from its last control goes to its first, and back. */
  function focusables() {
    return Array.prototype.slice.call(
      panel.querySelectorAll("button, textarea, input, a[href], [tabindex]:not([tabindex='-1'])")
    ).filter(function (n) {
      if (n.disabled || n.getClientRects().length === 0) return false;
      if (leadView && messages.contains(n)) return false; // under the lead form: not reachable
      return passage.hidden || !messages.contains(n); // under the passage view: not reachable
    });
  }
  panel.addEventListener("keydown", function (e) {
    if (e.key !== "Tab" || PAGE) return; // a page is no dialog: Tab may leave it
    var items = focusables();
    if (!items.length) return;
    var active = shadow.activeElement;
    var first = items[0];
    var last = items[items.length - 1];
    if (e.shiftKey && (active === first || items.indexOf(active) === -1)) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (active === last || items.indexOf(active) === -1)) {
      e.preventDefault();
      first.focus();
    }
  });

  newBtn.addEventListener("click", function () {
    if (controller) controller.abort();
    forgetSession();
    sessionId = null;
    hidePassage(false);
    while (messages.firstChild) messages.removeChild(messages.firstChild);
    renderIntro();
    input.focus();
  });

  // ---------------------------------------------------------------- markdown (see SAFETY above)
  var PURIFY = {
    ALLOWED_TAGS: ["p", "br", "strong", "b", "em", "i", "del", "s", "code", "pre", "ul", "ol", "li",
      "blockquote", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th",
      "td", "a"],
    ALLOWED_ATTR: ["href", "title", "align", "start"],
    ALLOWED_URI_REGEXP: /^https?:\/\//i,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };
  var BLOCKS = "p, li, ul, ol, td, th, blockquote, h1, h2, h3, h4, h5, h6";
  var md; // undefined: not built yet; null: libraries missing, answers stay plain text

  function escapeHtml(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function markdown() {
    if (md !== undefined) return md;
    md = null;
    if (!VENDOR || !VENDOR.marked || typeof VENDOR.DOMPurify !== "function") return md;
    try {
      var purify = VENDOR.DOMPurify(window); // a private instance: our hook only
      if (!purify.isSupported) return md;
      purify.addHook("afterSanitizeAttributes", function (node) {
        if (node.nodeName !== "A") return;
        var href = webUrl(node.getAttribute("href"));
        if (!href) { node.removeAttribute("href"); return; }
        node.setAttribute("href", href);
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener nofollow");
      });
      var parser = new VENDOR.marked.Marked({ gfm: true, breaks: true, async: false });
      parser.use({ renderer: {
        html: function (token) { return escapeHtml(token.text != null ? token.text : token.raw); },
        image: function (token) { return escapeHtml(token.text || ""); },
      } });
      md = { parser: parser, purify: purify };
    } catch (e) {
      md = null;
    }
    return md;
  }

  /** While streaming, close a dangling `**`, backtick or code fence so no raw marker flickers. */
  function closeOpenMarkers(text) {
    if (((text.match(/^\s*(```|~~~)/gm) || []).length) % 2) return text + "\n```";
    var t = text.replace(/(^|[^*])\*$/, "$1");
    // a closing marker must follow the last word: "**bold **" would stay raw
    if (((t.match(/\*\*/g) || []).length) % 2) t = t.replace(/\s+$/, "") + "**";
    if (((t.match(/`/g) || []).length) % 2) t = t.replace(/\s+$/, "") + "`";
    return t;
  }

  /** Render answer.raw into answer.text: sanitised markdown, citations, dir=auto on blocks. */
  function renderAnswer(answer, final) {
    if (final) answer.final = true;
    var engine = markdown();
    var frag;
    if (engine) {
      var html = engine.parser.parse(final ? answer.raw : closeOpenMarkers(answer.raw));
      frag = engine.purify.sanitize(html, PURIFY);
    } else {
      frag = document.createDocumentFragment();
      frag.appendChild(document.createTextNode(answer.raw));
    }
    answer.text.classList.toggle("plain", !engine);
    Array.prototype.slice.call(frag.querySelectorAll(BLOCKS)).forEach(function (n) {
      n.setAttribute("dir", "auto");
    });
    Array.prototype.slice.call(frag.querySelectorAll("table")).forEach(function (table) {
      var wrap = el("div", "kbchat-table");
      table.parentNode.insertBefore(wrap, table);
      wrap.appendChild(table);
    });
    linkCitations(frag, answer);
    while (answer.text.firstChild) answer.text.removeChild(answer.text.firstChild);
    answer.text.appendChild(frag);
  }

  function scheduleRender(answer) {
    if (answer.pending) return;
    answer.pending = true;
    var run = function () {
      answer.pending = false;
      if (answer.final) return;
      renderAnswer(answer, false);
      scrollToEnd();
    };
    if (window.requestAnimationFrame) window.requestAnimationFrame(run);
    else setTimeout(run, 16);
  }

  // ---------------------------------------------------------------- citations and passages
  var CITE = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

  function findSource(answer, n) {
    var list = Array.isArray(answer.sources) ? answer.sources : [];
    for (var i = 0; i < list.length; i++) {
      var s = list[i];
      if (s && typeof s === "object" && Number(s.number != null ? s.number : i + 1) === n) return s;
    }
    return null;
  }

  /** Numbers cited in the text, in order of first citation. */
  function citedIn(text) {
    var seen = [];
    String(text || "").replace(CITE, function (_, nums) {
      nums.split(",").forEach(function (n) {
        n = parseInt(n, 10);
        if (seen.indexOf(n) === -1) seen.push(n);
      });
      return "";
    });
    return seen;
  }

  /** `[1]` and `[1, 2]` outside code and links become buttons that open the passage. */
  function linkCitations(frag, answer) {
    var walker = document.createTreeWalker(frag, NodeFilter.SHOW_TEXT, null);
    var nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function (node) {
      var text = node.nodeValue;
      if (text.indexOf("[") === -1) return;
      for (var p = node.parentNode; p && p !== frag; p = p.parentNode) {
        if (p.nodeName === "A" || p.nodeName === "CODE" || p.nodeName === "PRE") return;
      }
      var out = document.createDocumentFragment();
      var last = 0;
      text.replace(CITE, function (match, nums, offset) {
        out.appendChild(document.createTextNode(text.slice(last, offset)));
        nums.split(",").forEach(function (n) { out.appendChild(citation(answer, parseInt(n, 10))); });
        last = offset + match.length;
        return match;
      });
      if (last === 0) return;
      out.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(out, node);
    });
  }

  function citation(answer, n) {
    var source = answer.final ? findSource(answer, n) : null;
    if (!source) return el("span", "kbchat-cite", String(n)); // sources not here (yet)
    var b = button("kbchat-cite", String(n), fmt(T.cite, n));
    b.addEventListener("click", function () { showPassage(source, b); });
    return b;
  }

  var passageReturn = null; // the control to focus again when the passage closes

  /** The cited passage, over the conversation: title, file, language, the text, the URL. */
  function showPassage(s, from) {
    while (passage.firstChild) passage.removeChild(passage.firstChild);
    var back = button("kbchat-passage-back", (DIR === "rtl" ? "\u2192 " : "\u2190 ") + T.back);
    back.addEventListener("click", function () { hidePassage(true); });
    passage.appendChild(back);
    var n = s.number != null ? s.number : "?";
    var heading = el("h3", "kbchat-passage-title", "[" + n + "] " + (s.title || basename(s.source)));
    heading.setAttribute("dir", "auto");
    passage.appendChild(heading);
    var meta = [basename(s.source)];
    if (s.language) meta.push(T.language + ": " + String(s.language).slice(0, 20));
    if (s.page != null && s.page !== "") meta.push(T.page + " " + s.page);
    if (s.section) meta.push(String(s.section).slice(0, 200));
    passage.appendChild(el("div", "kbchat-passage-meta", meta.join(" \u00b7 ")));
    var text = el("blockquote", "kbchat-passage-text", s.text || "");
    text.setAttribute("dir", "auto");
    if (s.language) text.setAttribute("lang", String(s.language).slice(0, 20));
    passage.appendChild(text);
    var url = webUrl(s.url);
    if (url) {
      var link = el("a", "kbchat-passage-link", T.openDoc);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener nofollow";
      passage.appendChild(link);
    }
    passage.setAttribute("aria-label", fmt(T.cite, n));
    passage.hidden = false;
    messages.setAttribute("aria-hidden", "true");
    passageReturn = from || null;
    back.focus();
  }

  function hidePassage(refocus) {
    if (passage.hidden) return;
    passage.hidden = true;
    messages.removeAttribute("aria-hidden");
    if (refocus && passageReturn && passageReturn.isConnected) passageReturn.focus();
    passageReturn = null;
  }

  // ---------------------------------------------------------------- rendering
  function scrollToEnd() { messages.scrollTop = messages.scrollHeight; }

  function addUserMessage(text) {
    var node = el("div", "kbchat-msg kbchat-msg-user", text);
    node.setAttribute("dir", "auto");
    messages.appendChild(node);
    scrollToEnd();
    return node;
  }

  /** An assistant bubble: its markdown text (re-rendered as it streams), sources and actions. */
  function addAssistantMessage(text) {
    var node = el("div", "kbchat-msg kbchat-msg-assistant");
    var textEl = el("div", "kbchat-text");
    textEl.setAttribute("dir", "auto");
    node.appendChild(textEl);
    messages.appendChild(node);
    var answer = { node: node, text: textEl, raw: String(text || ""), sources: null, final: false };
    if (answer.raw) renderAnswer(answer, false);
    scrollToEnd();
    return answer;
  }

  function addError(text) {
    var node = el("div", "kbchat-msg kbchat-msg-error", text);
    node.setAttribute("role", "alert");
    messages.appendChild(node);
    scrollToEnd();
    return node;
  }

  function sourceItem(answer, s, cited) {
    var n = s.number;
    var item = el("li");
    var b = button("kbchat-source" + (cited ? " cited" : ""), "[" + n + "] ");
    b.appendChild(el("bdi", "", basename(s.source))); // a Latin file name inside Arabic text
    if (s.page != null && s.page !== "") {
      b.appendChild(document.createTextNode(" (" + T.page + " " + s.page + ")"));
    }
    var tip = s.title || s.source || "";
    if (s.section) tip += (tip ? " \u2014 " : "") + s.section;
    b.title = String(tip); // a property, never parsed as HTML
    b.addEventListener("click", function () { showPassage(s, b); });
    item.appendChild(b);
    return item;
  }

  /** Cited sources in citation order; the others behind a "more" toggle. */
  function renderSources(answer, sources, cited) {
    if (!Array.isArray(sources) || sources.length === 0) return;
    answer.sources = sources.filter(function (s) { return s && typeof s === "object"; })
      .slice(0, 50)
      .map(function (s, i) {
        var copy = {};
        for (var k in s) if (own(s, k)) copy[k] = s[k];
        copy.number = Number(s.number != null ? s.number : i + 1);
        return copy;
      });
    var order = (Array.isArray(cited) ? cited : citedIn(answer.raw)).map(Number);
    var citedList = [];
    order.forEach(function (n) {
      var s = findSource(answer, n);
      if (s && citedList.indexOf(s) === -1) citedList.push(s);
    });
    var others = answer.sources.filter(function (s) { return citedList.indexOf(s) === -1; });

    var old = answer.node.querySelector(".kbchat-sources-block");
    if (old) old.parentNode.removeChild(old);
    var block = el("div", "kbchat-sources-block");
    block.appendChild(el("span", "kbchat-sources-heading", T.sources));
    if (citedList.length) {
      var list = el("ol", "kbchat-sources");
      citedList.forEach(function (s) { list.appendChild(sourceItem(answer, s, true)); });
      block.appendChild(list);
    }
    if (others.length) {
      var more = el("ol", "kbchat-sources-more");
      more.id = "kbchat-more-" + Math.random().toString(36).slice(2);
      others.forEach(function (s) { more.appendChild(sourceItem(answer, s, false)); });
      more.hidden = true;
      var toggle = button("kbchat-more", fmt(T.more, others.length));
      toggle.setAttribute("aria-expanded", "false");
      toggle.setAttribute("aria-controls", more.id);
      toggle.addEventListener("click", function () {
        more.hidden = !more.hidden;
        toggle.setAttribute("aria-expanded", more.hidden ? "false" : "true");
        toggle.textContent = more.hidden ? fmt(T.more, others.length) : T.less;
      });
      block.appendChild(toggle);
      block.appendChild(more);
    }
    var actions = answer.node.querySelector(".kbchat-actions");
    answer.node.insertBefore(block, actions);
  }

  function copyText(text) {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }
  function legacyCopy(text) {
    var area = el("textarea", "kbchat-sr");
    area.value = text;
    root.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
    root.removeChild(area);
    input.focus();
    return Promise.resolve();
  }

  /** Copy, and 👍/👎 that POST /api/feedback once (with the session id) when the answer is
   *  stored; `previous` marks an existing rating. */
  function renderActions(answer, messageId, previous) {
    var bar = el("div", "kbchat-actions");
    var copy = button("kbchat-copy", null, T.copy);
    copy.appendChild(icon(ICONS.copy));
    copy.addEventListener("click", function () {
      copyText(answer.raw).then(function () {
        var done = bar.querySelector(".kbchat-copied") || el("span", "kbchat-copied", T.copied);
        done.setAttribute("role", "status");
        copy.insertAdjacentElement("afterend", done);
        setTimeout(function () { if (done.parentNode) done.parentNode.removeChild(done); }, 2000);
      });
    });
    bar.appendChild(copy);
    answer.node.appendChild(bar);
    if (messageId == null || !sessionId) return;

    var session = sessionId; // the server accepts feedback only from the answer's session
    var feedback = el("div", "kbchat-feedback");
    var up = button("", null, T.up);
    var down = button("", null, T.down);
    up.appendChild(icon(ICONS.up));
    down.appendChild(icon(ICONS.down));
    feedback.appendChild(up);
    feedback.appendChild(down);
    bar.appendChild(feedback);

    function finish(chosen) {
      up.disabled = down.disabled = true;
      if (chosen) chosen.classList.add("chosen");
      if (!feedback.querySelector(".kbchat-thanks")) {
        feedback.appendChild(el("span", "kbchat-thanks", T.thanks));
      }
    }
    if (previous === "up" || previous === "down") {
      finish(previous === "up" ? up : down);
      return;
    }
    function rate(rating, chosen) {
      up.disabled = down.disabled = true;
      fetch(BASE + "/api/feedback", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ session_id: session, message_id: messageId, rating: rating }),
      }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        finish(chosen);
      }).catch(function () {
        up.disabled = down.disabled = false; // let the visitor try again
      });
    }
    up.addEventListener("click", function () { rate("up", up); });
    down.addEventListener("click", function () { rate("down", down); });
  }

  function setStreaming(on) {
    streaming = on;
    var focused = shadow.activeElement;
    sendBtn.disabled = on;
    sendBtn.hidden = on;
    stopBtn.hidden = !on;
    if (!on && focused === stopBtn) input.focus();
    messages.setAttribute("aria-busy", on ? "true" : "false");
  }

  stopBtn.addEventListener("click", function () { if (controller) controller.abort(); });

  // ---------------------------------------------------------------- history across page loads
  function loadHistory() {
    if (!sessionId) return;
    var id = sessionId;
    return fetch(BASE + "/api/sessions/" + encodeURIComponent(id), { headers: authHeaders() })
      .then(function (r) {
        if (r.status === 404) { if (sessionId === id) { forgetSession(); sessionId = null; } return null; }
        if (!r.ok) return null;
        return r.json();
      })
      .then(function (data) {
        // Skip if the visitor already started chatting or reset in the meantime.
        if (!data || !Array.isArray(data.messages) || sessionId !== id || hasTurns()) return;
        removeChips();
        data.messages.forEach(function (m) {
          if (!m) return;
          noteMessageId(m.id); // handoff section: polls ask for what came after
          if (m.role === "user") {
            addUserMessage(m.content || "");
          } else if (m.role === "operator") {
            addOperatorMessage(m.content || ""); // handoff section
          } else {
            var a = addAssistantMessage("");
            a.raw = String(m.content || "");
            renderSources(a, m.sources, null);
            renderAnswer(a, true);
            renderActions(a, m.id, m.feedback);
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
  function errorText(response, question) {
    var retry = response.headers.get("Retry-After");
    if (response.status === 429 || (response.status === 503 && retry)) {
      var wait = parseInt(retry || "", 10);
      if (!(wait >= 0)) wait = 30;
      return Promise.resolve(T.rateLimited.replace("{s}", String(wait)));
    }
    return response.json().then(function (problem) {
      if (problem && problem.code === "lead_required" && leadRefused(question)) return "";
      var detail = problem && typeof problem.detail === "string" ? problem.detail : "";
      if (!detail || response.status >= 500) return T.error;
      return T.error + " (" + detail.slice(0, 300) + ")";
    }, function () { return T.error; });
  }

  function ask(text) {
    text = String(text == null ? "" : text).trim();
    if (!text || streaming) return Promise.resolve(false);
    if (!isOpen()) open();
    if (leadBlocks()) return Promise.resolve(false); // lead capture section

    hidePassage(false);
    removeChips();
    var asked = addUserMessage(text);
    var answer = addAssistantMessage("");
    var typing = el("span", "kbchat-typing");
    typing.setAttribute("role", "status");
    typing.appendChild(el("i"));
    typing.appendChild(el("i"));
    typing.appendChild(el("i"));
    typing.appendChild(el("span", "kbchat-sr", T.thinking));
    answer.node.appendChild(typing);
    setStreaming(true);

    var body = { message: text, stream: true };
    if (sessionId) body.session_id = sessionId;
    controller = typeof AbortController === "function" ? new AbortController() : null;
    var gotText = false;
    var handedOff = false; // a `handoff` event came: the reply is the hand-over notice
    var failed = false;
    var finished = false; // the `done` event came

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
          answer.raw += String(d.text);
          scheduleRender(answer); // re-rendered as a whole, once per frame
        }
      } else if (ev.event === "sources") {
        renderSources(answer, d.sources, d.cited);
        scrollToEnd();
      } else if (ev.event === "done") {
        finished = true;
        removeTyping();
        if (d.session_id) { sessionId = String(d.session_id); storeSession(sessionId); }
        if (d.language) answer.node.setAttribute("lang", String(d.language).slice(0, 20));
        if (gotText) {
          renderAnswer(answer, true);
          // the hand-over notice is not an answer: nothing to rate or copy under it
          if (!handedOff) renderActions(answer, d.message_id, null);
        }
        handoffAfterAnswer(d); // handoff section: the offer
        scrollToEnd();
      } else if (ev.event === "handoff") { // handoff section: a person takes this conversation
        handedOff = true;
        removeTyping();
        handoffFromChat(d);
      } else if (ev.event === "error") {
        failed = true;
        removeTyping();
        dropEmptyAnswer();
        addError(d.message ? String(d.message) : T.error);
      }
    }

    return fetch(BASE + "/api/chat", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller ? controller.signal : undefined,
    })
      .then(function (response) {
        if (!response.ok) {
          if (response.status === 404 && sessionId) { forgetSession(); sessionId = null; }
          failed = true;
          return errorText(response, text).then(function (shown) {
            removeTyping();
            dropEmptyAnswer();
            if (shown) addError(shown);
            else if (asked.parentNode) asked.parentNode.removeChild(asked); // asked again after the lead form
          });
        }
        var type = response.headers.get("Content-Type") || "";
        if (!response.body || type.indexOf("text/event-stream") === -1) {
          // A server that ignored stream:true and answered with plain JSON.
          return response.json().then(function (d) {
            if (d && d.handoff && typeof d.handoff === "object") { // handoff section
              onEvent({ event: "handoff", data: { state: d.handoff.state, session_id: d.session_id } });
            }
            if (d && d.answer != null) onEvent({ event: "token", data: { text: d.answer } });
            if (d && d.sources) onEvent({ event: "sources", data: d });
            onEvent({ event: "done", data: d || {} });
          });
        }
        return readStream(response, onEvent);
      })
      .catch(function (err) {
        removeTyping();
        if (err && err.name === "AbortError") {
          // Stopped by the visitor (or a new conversation): what came so far stays, marked.
          dropEmptyAnswer();
          if (gotText && !finished) {
            renderAnswer(answer, true);
            answer.node.insertBefore(el("span", "kbchat-stopped", T.stopped),
              answer.node.querySelector(".kbchat-sources-block"));
            renderActions(answer, null, null);
          }
          return;
        }
        failed = true;
        dropEmptyAnswer();
        addError(T.error);
      })
      .then(function () {
        removeTyping();
        if (!gotText && !failed) dropEmptyAnswer();
        if (gotText && !answer.final) renderAnswer(answer, true);
        controller = null;
        setStreaming(false);
        scrollToEnd();
        if (!failed && leadNeeded()) showLead(); // lead capture section: after N answers
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

  // ---------------------------------------------------------------- lead capture (name, email, consent)
  // An assistant may ask for the visitor's name and email, with the operator's consent text
  // (config.lead), before the chat (the server then refuses chat without them: 403
  // lead_required) or after N answers. The form covers the conversation like the passage view;
  // the consent text is the operator's, set as text (never HTML). One lead per conversation.
  var LEAD_STRINGS = {
    en: { before: "Before we start, please tell us how to reach you.",
      after: "Would you like us to follow up? Leave your contact details.", name: "Name",
      email: "Email", submit: "Continue", later: "Not now", needName: "Please enter your name.",
      needEmail: "Please enter a valid email address.", needConsent: "Please tick the box to continue.",
      thanks: "Thank you! How can we help?", form: "Your contact details" },
    de: { before: "Bevor wir beginnen: Wie können wir Sie erreichen?",
      after: "Sollen wir uns bei Ihnen melden? Hinterlassen Sie Ihre Kontaktdaten.", name: "Name",
      email: "E-Mail", submit: "Weiter", later: "Später", needName: "Bitte geben Sie Ihren Namen ein.",
      needEmail: "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
      needConsent: "Bitte setzen Sie das Häkchen, um fortzufahren.",
      thanks: "Danke! Wie können wir helfen?", form: "Ihre Kontaktdaten" },
    es: { before: "Antes de empezar, dinos cómo contactarte.",
      after: "¿Quieres que te contactemos? Deja tus datos.", name: "Nombre",
      email: "Correo electrónico", submit: "Continuar", later: "Ahora no",
      needName: "Escribe tu nombre.", needEmail: "Escribe un correo electrónico válido.",
      needConsent: "Marca la casilla para continuar.", thanks: "¡Gracias! ¿En qué podemos ayudarte?",
      form: "Tus datos de contacto" },
    fr: { before: "Avant de commencer, indiquez-nous comment vous joindre.",
      after: "Souhaitez-vous être recontacté ? Laissez vos coordonnées.", name: "Nom",
      email: "E-mail", submit: "Continuer", later: "Plus tard", needName: "Veuillez saisir votre nom.",
      needEmail: "Veuillez saisir une adresse e-mail valide.",
      needConsent: "Veuillez cocher la case pour continuer.",
      thanks: "Merci ! Comment pouvons-nous vous aider ?", form: "Vos coordonnées" },
    it: { before: "Prima di iniziare, dicci come contattarti.",
      after: "Vuoi essere ricontattato? Lascia i tuoi recapiti.", name: "Nome", email: "Email",
      submit: "Continua", later: "Non ora", needName: "Inserisci il tuo nome.",
      needEmail: "Inserisci un indirizzo email valido.", needConsent: "Spunta la casella per continuare.",
      thanks: "Grazie! Come possiamo aiutarti?", form: "I tuoi recapiti" },
    pt: { before: "Antes de começar, diga-nos como entrar em contato.",
      after: "Quer que entremos em contato? Deixe seus dados.", name: "Nome", email: "E-mail",
      submit: "Continuar", later: "Agora não", needName: "Digite seu nome.",
      needEmail: "Digite um e-mail válido.", needConsent: "Marque a caixa para continuar.",
      thanks: "Obrigado! Como podemos ajudar?", form: "Seus dados de contato" },
    nl: { before: "Laat ons eerst weten hoe we u kunnen bereiken.",
      after: "Wilt u dat we contact opnemen? Laat uw gegevens achter.", name: "Naam",
      email: "E-mail", submit: "Doorgaan", later: "Niet nu", needName: "Vul uw naam in.",
      needEmail: "Vul een geldig e-mailadres in.", needConsent: "Vink het vakje aan om door te gaan.",
      thanks: "Bedankt! Waarmee kunnen we helpen?", form: "Uw contactgegevens" },
    ru: { before: "Прежде чем начать, оставьте, пожалуйста, свои контакты.",
      after: "Хотите, чтобы мы с вами связались? Оставьте контакты.", name: "Имя",
      email: "Эл. почта", submit: "Продолжить", later: "Не сейчас", needName: "Введите имя.",
      needEmail: "Введите корректный адрес эл. почты.",
      needConsent: "Отметьте флажок, чтобы продолжить.", thanks: "Спасибо! Чем можем помочь?",
      form: "Ваши контакты" },
    zh: { before: "开始之前，请留下您的联系方式。", after: "需要我们联系您吗？请留下联系方式。",
      name: "姓名", email: "电子邮箱", submit: "继续", later: "以后再说", needName: "请输入您的姓名。",
      needEmail: "请输入有效的电子邮箱地址。", needConsent: "请勾选复选框以继续。",
      thanks: "谢谢！有什么可以帮您？", form: "您的联系方式" },
    ja: { before: "始める前に、ご連絡先を教えてください。",
      after: "こちらからご連絡しましょうか？連絡先をご入力ください。", name: "お名前",
      email: "メールアドレス", submit: "続ける", later: "今はしない", needName: "お名前を入力してください。",
      needEmail: "有効なメールアドレスを入力してください。",
      needConsent: "続けるにはチェックを入れてください。", thanks: "ありがとうございます！ご用件をどうぞ。",
      form: "ご連絡先" },
    ar: { before: "قبل أن نبدأ، أخبرنا كيف يمكننا التواصل معك.",
      after: "هل تريد أن نتواصل معك؟ اترك بيانات الاتصال.", name: "الاسم",
      email: "البريد الإلكتروني", submit: "متابعة", later: "ليس الآن", needName: "يرجى إدخال اسمك.",
      needEmail: "يرجى إدخال بريد إلكتروني صالح.", needConsent: "يرجى تحديد المربع للمتابعة.",
      thanks: "شكرًا! كيف يمكننا مساعدتك؟", form: "بيانات الاتصال" },
  };
  var TL = LEAD_STRINGS[LANG] || LEAD_STRINGS.en;
  var LEAD_CSS = [
    ".kbchat-lead { position: absolute; inset: 0; display: flex; flex-direction: column; gap: 8px;",
    "  padding: 16px; overflow-y: auto; background: var(--kb-bg); }",
    ".kbchat-lead p { margin: 0; }",
    ".kbchat-lead-intro { font-weight: 600; }",
    ".kbchat-lead label { font-weight: 600; }",
    ".kbchat-lead input[type=text], .kbchat-lead input[type=email] { height: 38px; margin: 0;",
    "  padding: 0 10px; border: 1px solid var(--kb-border); border-radius: 8px;",
    "  background: var(--kb-bg); color: var(--kb-fg); }",
    ".kbchat-lead input[aria-invalid=true] { border-color: var(--kb-error-fg); }",
    ".kbchat-lead input:focus-visible { outline: 3px solid var(--kb-accent); outline-offset: 2px; }",
    ".kbchat-lead-consent { display: flex; gap: 8px; align-items: flex-start; }",
    ".kbchat-lead-consent input { width: 18px; height: 18px; margin: 1px 0 0 0; flex: 0 0 auto; }",
    ".kbchat-lead-consent label { font-weight: 400; white-space: pre-wrap; overflow-wrap: anywhere; }",
    ".kbchat-lead-error { color: var(--kb-error-fg); min-height: 20px; }",
    ".kbchat-lead-actions { display: flex; gap: 8px; }",
    ".kbchat-lead-submit { height: 40px; padding: 0 16px; border-radius: 8px;",
    "  background: var(--kb-accent); color: var(--kb-on-accent); font-weight: 600; }",
    ".kbchat-lead-later { height: 40px; padding: 0 12px; border-radius: 8px;",
    "  border: 1px solid var(--kb-border); }",
  ].join("\n");
  addStyles(shadow, LEAD_CSS); // a constructed sheet after the main one: the full page's CSP forbids <style>

  var LEAD_KEY = "kbchat:" + KEY + ":lead"; // the conversation that has given its details
  var lead = { mode: "off", after: 3, consent: "", language: "en" };
  var leadView = null; // the form while it is shown
  var leadSkipped = null; // the conversation whose visitor chose "not now" (after mode)
  var leadRetry = null; // the question the server refused for want of a lead, asked once it is sent
  var leadFor = null; // the conversation whose lead was sent, when localStorage is unavailable

  /** config.lead, checked: without a consent text there is nothing to agree to, so no form. */
  function applyLeadConfig(c) {
    var l = c && c.lead && typeof c.lead === "object" ? c.lead : {};
    lead.mode = l.mode === "before" || l.mode === "after" ? l.mode : "off";
    var n = parseInt(l.after_messages, 10);
    lead.after = n >= 1 && n <= 50 ? n : 3;
    var fallback = typeof c.default_language === "string" ? c.default_language.slice(0, 8) : "en";
    var consent = l.consent && typeof l.consent === "object" ? l.consent : {};
    var order = [VISITOR_LANG, fallback, "en"];
    lead.consent = "";
    for (var i = 0; i < order.length && !lead.consent; i++) {
      if (own(consent, order[i]) && typeof consent[order[i]] === "string") {
        lead.consent = consent[order[i]].trim().slice(0, 1000);
        lead.language = order[i];
      }
    }
    if (!lead.consent) lead.mode = "off";
    if (leadNeeded()) showLead();
  }

  function leadGiven() {
    if (sessionId && leadFor === sessionId) return true;
    try { return !!sessionId && localStorage.getItem(LEAD_KEY) === sessionId; } catch (e) { return false; }
  }

  function leadNeeded() {
    if (lead.mode === "off" || leadGiven()) return false;
    if (lead.mode === "before") return true;
    var answers = messages.querySelectorAll(".kbchat-msg-assistant").length;
    return leadSkipped !== (sessionId || "") && answers >= lead.after;
  }

  /** The server refused `question` (403 lead_required: `before`, or `after` N answers however
   * the client counted): the form, then the question again once the lead is stored. False when
   * there is no consent text, so no form to show. */
  function leadRefused(question) {
    if (!lead.consent) return false;
    if (lead.mode === "off") lead.mode = "before"; // the assistant changed since its config came
    leadSkipped = null;
    leadRetry = question || null;
    showLead();
    return true;
  }

  /** Called before a question is sent: true when the form is shown instead. */
  function leadBlocks() {
    if (!leadNeeded()) return false;
    showLead();
    return true;
  }

  function leadField(form, type, id, label, autocomplete, max) {
    var l = el("label", "", label);
    l.setAttribute("for", id);
    var f = el("input");
    f.type = type;
    f.id = id;
    f.autocomplete = autocomplete;
    f.maxLength = max;
    f.required = true;
    f.setAttribute("aria-describedby", "kbchat-lead-error");
    form.appendChild(l);
    form.appendChild(f);
    return f;
  }

  function showLead() {
    if (leadView) return;
    var view = el("form", "kbchat-lead");
    view.noValidate = true;
    view.setAttribute("aria-label", TL.form);
    var intro = el("p", "kbchat-lead-intro", lead.mode === "before" ? TL.before : TL.after);
    view.appendChild(intro);
    var name = leadField(view, "text", "kbchat-lead-name", TL.name, "name", 200);
    var email = leadField(view, "email", "kbchat-lead-email", TL.email, "email", 254);
    var row = el("div", "kbchat-lead-consent");
    var box = el("input");
    box.type = "checkbox";
    box.id = "kbchat-lead-consent";
    box.setAttribute("aria-describedby", "kbchat-lead-error");
    var consent = el("label", "", lead.consent); // the operator's text, as text
    consent.setAttribute("for", box.id);
    consent.setAttribute("dir", "auto");
    row.appendChild(box);
    row.appendChild(consent);
    view.appendChild(row);
    var error = el("p", "kbchat-lead-error");
    error.id = "kbchat-lead-error";
    error.setAttribute("role", "alert");
    view.appendChild(error);
    var actions = el("div", "kbchat-lead-actions");
    var submit = el("button", "kbchat-lead-submit", TL.submit);
    submit.type = "submit";
    actions.appendChild(submit);
    if (lead.mode === "after") {
      var later = button("kbchat-lead-later", TL.later);
      later.addEventListener("click", function () {
        leadSkipped = sessionId || "";
        leadRetry = null;
        hideLead();
      });
      actions.appendChild(later);
    }
    view.appendChild(actions);

    function invalid(field, text) {
      [name, email, box].forEach(function (f) { f.removeAttribute("aria-invalid"); });
      error.textContent = text;
      if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
    }
    view.addEventListener("submit", function (e) {
      e.preventDefault();
      if (submit.disabled) return;
      if (!name.value.trim()) return invalid(name, TL.needName);
      if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email.value.trim())) return invalid(email, TL.needEmail);
      if (!box.checked) return invalid(box, TL.needConsent);
      invalid(null, "");
      submit.disabled = true;
      sendLead(name.value.trim(), email.value.trim(), true).then(function (problem) {
        submit.disabled = false;
        if (problem === "email") invalid(email, TL.needEmail);
        else if (problem) invalid(null, problem);
      });
    });
    leadView = view;
    passage.parentNode.appendChild(view);
    input.disabled = true;
    sendBtn.disabled = true;
    if (isOpen()) name.focus();
  }

  function hideLead() {
    if (!leadView) return;
    var had = leadView.contains(shadow.activeElement);
    leadView.parentNode.removeChild(leadView);
    leadView = null;
    input.disabled = false;
    sendBtn.disabled = streaming;
    if (had) input.focus();
  }

  /** POST /api/leads; a Promise of null (stored), "email" or the text to show. */
  function sendLead(name, email, retry) {
    var body = { name: name, email: email, consent: true, language: lead.language };
    if (sessionId) body.session_id = sessionId;
    return fetch(BASE + "/api/leads", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    }).then(function (r) {
      if (r.status === 404 && sessionId && retry) { // the conversation is gone: a new one
        forgetSession();
        sessionId = null;
        return sendLead(name, email, false);
      }
      if (r.status === 422) {
        return r.json().then(function (p) {
          var bad = p && Array.isArray(p.errors) && p.errors.some(function (e) {
            return e && Array.isArray(e.loc) && e.loc.indexOf("email") !== -1;
          });
          return bad ? "email" : T.error;
        }, function () { return T.error; });
      }
      if (!r.ok && r.status !== 409) return errorText(r); // 409: it already has one
      return (r.status === 409 ? Promise.resolve({}) : r.json()).then(function (d) {
        if (d && typeof d.session_id === "string" && d.session_id) {
          sessionId = d.session_id;
          storeSession(sessionId);
        }
        leadFor = sessionId;
        try { if (sessionId) localStorage.setItem(LEAD_KEY, sessionId); } catch (e) { /* private */ }
        var focusInput = leadView && leadView.contains(shadow.activeElement);
        hideLead();
        var thanks = el("div", "kbchat-greeting", TL.thanks);
        thanks.setAttribute("role", "status");
        messages.appendChild(thanks);
        scrollToEnd();
        if (focusInput || isOpen()) input.focus();
        var retry = leadRetry;
        leadRetry = null;
        if (retry) ask(retry); // the question the server refused until now
        return null;
      });
    }).catch(function () { return T.error; });
  }

  newBtn.addEventListener("click", function () { // a new conversation asks again
    leadRetry = null;
    hideLead();
    if (leadNeeded()) showLead();
  });

  // ---------------------------------------------------------------- human handoff
  // An assistant whose config has handoff.enabled lets the visitor ask for a person: a button in
  // the header, and a chip under an answer whose `done` carries offer_handoff: true. It POSTs
  // /api/handoff for the conversation (there must be one: before the first question the widget
  // asks for the question first, since the person needs something to read). The server's
  // localized `message` is shown as a notice, not as an answer; `offline` (outside hours) adds a
  // small email form. A `handoff` chat event (the visitor asked for a person in words, or wrote
  // while one is in the conversation) switches to the same state.
  // While a handoff is waiting or active, GET /api/sessions/{id}/updates?after=<last id seen> is
  // polled every POLL_MS, only while the page is visible, longer after each failure and after a
  // 429's Retry-After. Operator messages get their own bubbles, rendered by renderAnswer (the
  // one markdown + DOMPurify path, see SAFETY), without sources or feedback. The state is kept
  // beside the session in localStorage, so a reload polls on; "closed" or a new conversation ends it.
  var HANDOFF_STRINGS = {
    en: { talk: "Talk to a person", team: "Support team",
      first: "Please type your question first, then you can ask for a person.",
      joined: "You are now talking with the support team.",
      back: "The assistant is back. Ask me anything.",
      unread: "New message from the support team",
      emailIntro: "Leave your email address and we will reply as soon as we can.",
      emailForm: "Your email address", send: "Send",
      emailThanks: "Thank you! We will reply to you by email." },
    de: { talk: "Mit einer Person sprechen", team: "Support-Team",
      first: "Bitte schreiben Sie zuerst Ihre Frage, dann können Sie nach einer Person fragen.",
      joined: "Sie sprechen jetzt mit dem Support-Team.",
      back: "Der Assistent ist zurück. Fragen Sie mich gern.",
      unread: "Neue Nachricht vom Support-Team",
      emailIntro: "Hinterlassen Sie Ihre E-Mail-Adresse, wir antworten so bald wie möglich.",
      emailForm: "Ihre E-Mail-Adresse", send: "Senden",
      emailThanks: "Danke! Wir antworten Ihnen per E-Mail." },
    es: { talk: "Hablar con una persona", team: "Equipo de soporte",
      first: "Escribe primero tu pregunta y luego podrás pedir hablar con una persona.",
      joined: "Ahora estás hablando con el equipo de soporte.",
      back: "El asistente ha vuelto. Pregúntame lo que quieras.",
      unread: "Nuevo mensaje del equipo de soporte",
      emailIntro: "Déjanos tu correo electrónico y te responderemos lo antes posible.",
      emailForm: "Tu correo electrónico", send: "Enviar",
      emailThanks: "¡Gracias! Te responderemos por correo electrónico." },
    fr: { talk: "Parler à une personne", team: "Équipe d’assistance",
      first: "Écrivez d’abord votre question, puis vous pourrez demander à parler à une personne.",
      joined: "Vous échangez maintenant avec l’équipe d’assistance.",
      back: "L’assistant est de retour. Posez-moi vos questions.",
      unread: "Nouveau message de l’équipe d’assistance",
      emailIntro: "Laissez votre adresse e-mail et nous vous répondrons dès que possible.",
      emailForm: "Votre adresse e-mail", send: "Envoyer",
      emailThanks: "Merci ! Nous vous répondrons par e-mail." },
    it: { talk: "Parla con una persona", team: "Team di assistenza",
      first: "Scrivi prima la tua domanda, poi potrai chiedere di parlare con una persona.",
      joined: "Ora stai parlando con il team di assistenza.",
      back: "L’assistente è tornato. Chiedimi pure.",
      unread: "Nuovo messaggio dal team di assistenza",
      emailIntro: "Lascia il tuo indirizzo email e ti risponderemo al più presto.",
      emailForm: "Il tuo indirizzo email", send: "Invia",
      emailThanks: "Grazie! Ti risponderemo via email." },
    pt: { talk: "Falar com uma pessoa", team: "Equipe de suporte",
      first: "Escreva sua pergunta primeiro; depois você pode pedir para falar com uma pessoa.",
      joined: "Agora você está falando com a equipe de suporte.",
      back: "O assistente está de volta. Pergunte o que quiser.",
      unread: "Nova mensagem da equipe de suporte",
      emailIntro: "Deixe seu e-mail e responderemos o mais rápido possível.",
      emailForm: "Seu e-mail", send: "Enviar",
      emailThanks: "Obrigado! Responderemos por e-mail." },
    nl: { talk: "Met een medewerker praten", team: "Supportteam",
      first: "Typ eerst je vraag, daarna kun je om een medewerker vragen.",
      joined: "Je praat nu met het supportteam.",
      back: "De assistent is terug. Vraag maar raak.",
      unread: "Nieuw bericht van het supportteam",
      emailIntro: "Laat je e-mailadres achter, dan antwoorden we zo snel mogelijk.",
      emailForm: "Je e-mailadres", send: "Verzenden",
      emailThanks: "Bedankt! We antwoorden je per e-mail." },
    ru: { talk: "Связаться с сотрудником", team: "Служба поддержки",
      first: "Сначала напишите свой вопрос, затем можно позвать сотрудника.",
      joined: "Теперь с вами общается служба поддержки.",
      back: "Ассистент снова на связи. Задавайте вопросы.",
      unread: "Новое сообщение от службы поддержки",
      emailIntro: "Оставьте адрес эл. почты, и мы ответим как можно скорее.",
      emailForm: "Ваш адрес эл. почты", send: "Отправить",
      emailThanks: "Спасибо! Мы ответим вам по эл. почте." },
    zh: { talk: "联系人工客服", team: "客服团队",
      first: "请先输入您的问题，然后即可请求人工客服。",
      joined: "您现在正在与客服团队交谈。",
      back: "智能助手已回来，欢迎继续提问。",
      unread: "客服团队发来新消息",
      emailIntro: "请留下您的电子邮箱，我们会尽快回复。",
      emailForm: "您的电子邮箱", send: "发送",
      emailThanks: "谢谢！我们会通过电子邮件回复您。" },
    ja: { talk: "担当者と話す", team: "サポートチーム",
      first: "まず質問を入力してください。その後、担当者をお呼びできます。",
      joined: "ただいまサポートチームが対応しています。",
      back: "アシスタントに戻りました。何でもお尋ねください。",
      unread: "サポートチームから新しいメッセージ",
      emailIntro: "メールアドレスをご入力いただければ、できるだけ早くご返信します。",
      emailForm: "メールアドレス", send: "送信",
      emailThanks: "ありがとうございます！メールでご返信します。" },
    ar: { talk: "التحدث مع شخص", team: "فريق الدعم",
      first: "يرجى كتابة سؤالك أولاً، ثم يمكنك طلب التحدث مع شخص.",
      joined: "أنت الآن تتحدث مع فريق الدعم.",
      back: "عاد المساعد. اسألني عن أي شيء.",
      unread: "رسالة جديدة من فريق الدعم",
      emailIntro: "اترك بريدك الإلكتروني وسنرد عليك في أقرب وقت ممكن.",
      emailForm: "بريدك الإلكتروني", send: "إرسال",
      emailThanks: "شكرًا! سنرد عليك عبر البريد الإلكتروني." },
  };
  var TH = HANDOFF_STRINGS[LANG] || HANDOFF_STRINGS.en;
  var HANDOFF_CSS = [
    ".kbchat-bubble { position: relative; }",
    ".kbchat-bubble.kbchat-unread::after { content: ''; position: absolute; top: 0;",
    "  inset-inline-end: 0; width: 14px; height: 14px; border-radius: 7px; background: #d1242f;",
    "  border: 2px solid #ffffff; }",
    ".kbchat-header .kbchat-handoff svg { width: 20px; height: 20px; display: block;",
    "  fill: var(--kb-on-accent); }",
    ".kbchat-notice { align-self: center; max-width: 92%; padding: 4px 12px; border-radius: 12px;",
    "  border: 1px dashed var(--kb-border); text-align: center; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".kbchat-notice, .kbchat-root .kbchat-notice { font-size: 13px; line-height: 18px;",
    "  color: var(--kb-muted); }",
    ".kbchat-msg-operator { align-self: flex-start; background: var(--kb-bg);",
    "  border: 1px solid var(--kb-border); border-inline-start: 4px solid var(--kb-accent); }",
    ".kbchat-operator-name { display: block; margin-bottom: 2px; font-size: 12px; line-height: 16px;",
    "  font-weight: 700; color: var(--kb-muted); }",
    ".kbchat-handoff-offer { align-self: flex-start; }",
    ".kbchat-handoff-chip { gap: 6px; padding: 6px 12px; border-radius: 16px;",
    "  background: var(--kb-accent); font-weight: 600; }",
    ".kbchat-handoff-chip, .kbchat-handoff-chip * { color: var(--kb-on-accent); }",
    ".kbchat-handoff-chip svg { width: 16px; height: 16px; display: block;",
    "  fill: var(--kb-on-accent); }",
    ".kbchat-handoff-chip:hover { filter: brightness(0.92); }",
    ".kbchat-handoff-email { align-self: stretch; display: flex; flex-direction: column; gap: 6px;",
    "  margin: 0; padding: 10px 12px; border: 1px solid var(--kb-border); border-radius: 12px;",
    "  background: var(--kb-bg); }",
    ".kbchat-handoff-email p { margin: 0; }",
    ".kbchat-handoff-email label { font-weight: 600; }",
    ".kbchat-handoff-email-row { display: flex; gap: 8px; }",
    ".kbchat-handoff-email input { flex: 1 1 auto; min-width: 0; height: 38px; margin: 0;",
    "  padding: 0 10px; border: 1px solid var(--kb-border); border-radius: 8px;",
    "  background: var(--kb-bg); color: var(--kb-fg); }",
    ".kbchat-handoff-email input[aria-invalid=true] { border-color: var(--kb-error-fg); }",
    ".kbchat-handoff-email input:focus-visible { outline: 3px solid var(--kb-accent);",
    "  outline-offset: 2px; }",
    ".kbchat-handoff-email-error { color: var(--kb-error-fg); }",
    ".kbchat-handoff-email-error:empty { display: none; }",
    ".kbchat-handoff-email button { height: 38px; padding: 0 14px; border-radius: 8px;",
    "  background: var(--kb-accent); color: var(--kb-on-accent); font-weight: 600; }",
  ].join("\n");
  addStyles(shadow, HANDOFF_CSS);

  var HANDOFF_KEY = "kbchat:" + ID + ":handoff"; // {session, state, after, email} of the open handoff
  var POLL_MS = 3000;
  var POLL_MAX_MS = 60000;
  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/; // the lead form's check
  var PERSON = "M12 12c2.21 0 4-1.79 4-4s-1.79-4-4-4-4 1.79-4 4 1.79 4 4 4zm0 2c-2.67 0-8 1.34-8 " +
    "4v2h16v-2c0-2.66-5.33-4-8-4z";
  // state: null, "waiting" or "active"; run: bumped when a handoff ends, so a late answer of an
  // old poll changes nothing; skipped: a poll fell due while the page was hidden
  var handoff = { enabled: false, state: null, session: null, run: 0, timer: null, polling: false,
    failures: 0, skipped: false, offline: false, emailDone: false, busy: false };
  var lastSeenId = 0; // the highest message id this conversation has shown (the `after` of a poll)

  var handoffBtn = button("kbchat-handoff", null, TH.talk);
  handoffBtn.appendChild(icon(PERSON));
  handoffBtn.hidden = true;
  newBtn.parentNode.insertBefore(handoffBtn, newBtn);
  handoffBtn.addEventListener("click", requestHandoff);

  function handingOff() { return handoff.state === "waiting" || handoff.state === "active"; }

  /** config.handoff.enabled, strictly true; anything else (missing, "yes") is off. */
  function applyHandoffConfig(c) {
    var h = c && c.handoff && typeof c.handoff === "object" ? c.handoff : {};
    handoff.enabled = h.enabled === true;
    updateHandoffButton();
  }

  function updateHandoffButton() { handoffBtn.hidden = !handoff.enabled || handingOff(); }

  function noteMessageId(id) {
    var n = typeof id === "number" ? id : NaN; // not "7", not true
    if (Math.floor(n) === n && n > lastSeenId && n <= Number.MAX_SAFE_INTEGER) lastSeenId = n;
  }

  /** A line from the widget or the server about the conversation itself: not an answer. */
  function addNotice(text) {
    var node = el("div", "kbchat-notice", text);
    node.setAttribute("role", "status");
    node.setAttribute("dir", "auto");
    messages.appendChild(node);
    scrollToEnd();
    return node;
  }

  /** An operator's message: labelled with the team's name, markdown sanitised like an answer. */
  function addOperatorMessage(text, live) {
    if (live && !isOpen()) { // the visitor closed the panel while waiting: a dot on the launcher
      bubble.classList.add("kbchat-unread");
      bubble.setAttribute("aria-label", T.open + " \u2014 " + TH.unread);
    }
    var node = el("div", "kbchat-msg kbchat-msg-operator");
    node.appendChild(el("span", "kbchat-operator-name", TH.team));
    var textEl = el("div", "kbchat-text");
    textEl.setAttribute("dir", "auto");
    node.appendChild(textEl);
    messages.appendChild(node);
    renderAnswer({ node: node, text: textEl, raw: String(text), sources: null, final: false }, true);
    scrollToEnd();
  }

  function removeOffers() {
    var offers = messages.querySelectorAll(".kbchat-handoff-offer");
    Array.prototype.slice.call(offers).forEach(function (n) { n.parentNode.removeChild(n); });
  }

  /** The prominent "Talk to a person" under an answer the assistant could not give. */
  function offerHandoff() {
    removeOffers();
    var wrap = el("div", "kbchat-handoff-offer");
    var chip = button("kbchat-handoff-chip", TH.talk);
    chip.insertBefore(icon(PERSON), chip.firstChild);
    chip.addEventListener("click", requestHandoff);
    wrap.appendChild(chip);
    messages.appendChild(wrap);
    scrollToEnd();
  }

  /** Called by ask() on `done`: the answer's id, and the offer when the server makes one. */
  function handoffAfterAnswer(d) {
    noteMessageId(d.message_id);
    if (d.offer_handoff === true && handoff.enabled && !handingOff()) offerHandoff();
  }

  /** Called by ask() on a `handoff` event (or a non-stream body's `handoff`). */
  function handoffFromChat(d) {
    d = d && typeof d === "object" ? d : {};
    if (typeof d.session_id === "string" && d.session_id) {
      sessionId = d.session_id;
      storeSession(sessionId);
    }
    if (!sessionId) return;
    startHandoff(d.state === "active" || d.state === "offline" ? d.state : "waiting");
  }

  /** POST /api/handoff for this conversation; the answer's message is shown as a notice. */
  function requestHandoff() {
    if (handoff.busy) return;
    if (!sessionId) {
      addNotice(TH.first);
      input.focus();
      return;
    }
    var session = sessionId;
    handoff.busy = true;
    fetch(BASE + "/api/handoff", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ session_id: session }),
    }).then(function (r) {
      if (!r.ok) {
        if (r.status === 404 && sessionId === session) { forgetSession(); sessionId = null; }
        if (r.status === 403) { // switched off since the config was cached: no button then
          r.clone().json().then(function (p) {
            if (!p || p.code !== "handoff_disabled") return;
            handoff.enabled = false;
            removeOffers();
            updateHandoffButton();
          }, function () { /* not a problem document */ });
        }
        return errorText(r).then(addError);
      }
      return r.json().then(function (d) {
        if (sessionId !== session) return; // a new conversation meanwhile
        d = d && typeof d === "object" ? d : {};
        var message = typeof d.message === "string" ? d.message.trim().slice(0, 1000) : "";
        if (message) addNotice(message); // the server's text, as text
        startHandoff(d.state === "active" || d.state === "offline" ? d.state : "waiting");
      });
    }).catch(function () { addError(T.error); })
      .then(function () { handoff.busy = false; });
  }

  /** Enter (or stay in) the handoff state; "offline" is a waiting handoff plus the email form. */
  function startHandoff(state) {
    var already = handingOff() && handoff.session === sessionId;
    if (!already) {
      handoff.run++;
      handoff.failures = 0;
      handoff.polling = false;
      handoff.offline = false;
      handoff.emailDone = false;
    }
    handoff.session = sessionId;
    if (already && state === "active") joined();
    else if (!already) handoff.state = state === "active" ? "active" : "waiting";
    removeOffers();
    updateHandoffButton();
    if (state === "offline" && handoff.state !== "active") {
      handoff.offline = true;
      showHandoffEmail();
    }
    saveHandoff();
    if (!already) pollNow();
  }

  /** Leave the handoff state: no more polling; `text` is said when one was open. */
  function endHandoff(text) {
    var was = handingOff();
    handoff.run++;
    clearTimeout(handoff.timer);
    handoff.timer = null;
    handoff.polling = false;
    handoff.state = null;
    handoff.session = null;
    removeHandoffEmail();
    forgetHandoff();
    updateHandoffButton();
    if (was && text) addNotice(text);
  }

  function saveHandoff() {
    if (!handingOff()) return;
    var saved = { session: handoff.session, state: handoff.state, after: lastSeenId,
      offline: handoff.offline, email: handoff.emailDone };
    try { localStorage.setItem(HANDOFF_KEY, JSON.stringify(saved)); } catch (e) { /* private mode */ }
  }
  function forgetHandoff() {
    try { localStorage.removeItem(HANDOFF_KEY); } catch (e) { /* private mode */ }
  }

  /** After the history of a reloaded page: a handoff kept with this conversation polls on. */
  function resumeHandoff() {
    var saved = null;
    try { saved = JSON.parse(localStorage.getItem(HANDOFF_KEY) || "null"); } catch (e) { saved = null; }
    if (!saved || typeof saved !== "object" || !sessionId || saved.session !== sessionId) {
      forgetHandoff();
      return;
    }
    noteMessageId(saved.after); // when the history could not be read
    handoff.run++;
    handoff.session = sessionId;
    handoff.state = saved.state === "active" ? "active" : "waiting";
    handoff.offline = saved.offline === true;
    handoff.emailDone = saved.email === true;
    updateHandoffButton();
    if (handoff.offline && handoff.state === "waiting") showHandoffEmail(); // not left yet
    pollNow();
  }

  function schedulePoll(ms) {
    clearTimeout(handoff.timer);
    handoff.timer = setTimeout(pollNow, ms);
  }

  /** The next wait after a failed poll: 6 s, 12 s, … up to a minute. */
  function backoffMs() {
    handoff.failures = Math.min(handoff.failures + 1, 10);
    return Math.min(POLL_MAX_MS, POLL_MS * Math.pow(2, handoff.failures));
  }

  function pollNow() {
    clearTimeout(handoff.timer);
    handoff.timer = null;
    if (!handingOff() || handoff.polling) return;
    if (document.visibilityState === "hidden") { handoff.skipped = true; return; }
    handoff.skipped = false;
    // a chat in flight may still bring the id of a message it stored (the phrase's reply): ask
    // after it, or that message would come back as news
    if (streaming) { schedulePoll(POLL_MS); return; }
    handoff.polling = true;
    var run = handoff.run;
    var url = BASE + "/api/sessions/" + encodeURIComponent(handoff.session) +
      "/updates?after=" + lastSeenId;
    fetch(url, { headers: authHeaders(), cache: "no-store" })
      .then(function (r) {
        if (run !== handoff.run) return 0;
        if (r.status === 429) {
          var wait = parseInt(r.headers.get("Retry-After") || "", 10);
          return wait >= 0 ? Math.min(Math.max(wait, 3), 600) * 1000 : backoffMs();
        }
        if (r.status === 401 || r.status === 403 || r.status === 404) { // gone, or no longer ours
          endHandoff(null);
          return 0;
        }
        if (!r.ok) return backoffMs();
        return r.json().then(function (d) {
          if (run !== handoff.run) return 0;
          handoff.failures = 0;
          applyUpdates(d);
          return POLL_MS;
        });
      })
      .catch(function () { return run === handoff.run ? backoffMs() : 0; })
      .then(function (wait) {
        if (run !== handoff.run) return;
        handoff.polling = false;
        if (wait && handingOff()) schedulePoll(wait);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "hidden" && handoff.skipped) pollNow();
  });

  /** One poll's answer: who joined, the new messages in id order, and whether it is over. */
  function applyUpdates(d) {
    d = d && typeof d === "object" ? d : {};
    var h = d.handoff && typeof d.handoff === "object" ? d.handoff : null;
    if (h && h.state === "active") joined();
    var list = (Array.isArray(d.messages) ? d.messages : []).filter(function (m) {
      var id = m && typeof m === "object" && typeof m.id === "number" ? m.id : NaN;
      return Math.floor(id) === id && id > lastSeenId && id <= Number.MAX_SAFE_INTEGER;
    }).slice(0, 200);
    list.sort(function (a, b) { return a.id - b.id; });
    list.forEach(function (m) {
      if (m.id <= lastSeenId) return; // the same id twice
      noteMessageId(m.id);
      var text = typeof m.content === "string" ? m.content.slice(0, 20000) : "";
      if (!text) return;
      if (m.role === "operator") {
        addOperatorMessage(text, true);
      } else if (m.role === "assistant") { // the assistant answers again: like any answer
        var a = addAssistantMessage("");
        a.raw = text;
        renderAnswer(a, true);
        renderActions(a, m.id, null);
      }
    });
    if (!h || h.state === "closed") endHandoff(TH.back);
    else saveHandoff();
  }

  /** A person took the conversation: say so once; an email address is no longer needed. */
  function joined() {
    if (handoff.state === "active") return;
    handoff.state = "active";
    handoff.offline = false;
    removeHandoffEmail();
    addNotice(TH.joined);
  }

  function removeHandoffEmail() {
    var form = messages.querySelector(".kbchat-handoff-email");
    if (form) form.parentNode.removeChild(form);
  }

  /** Outside hours: an email address for the team to answer to (POST /api/handoff/email). */
  function showHandoffEmail() {
    if (handoff.emailDone || messages.querySelector(".kbchat-handoff-email")) return;
    var view = el("form", "kbchat-handoff-email");
    view.noValidate = true;
    view.setAttribute("aria-label", TH.emailForm);
    view.appendChild(el("p", "", TH.emailIntro));
    var label = el("label", "", TL.email);
    label.setAttribute("for", "kbchat-handoff-email");
    view.appendChild(label);
    var row = el("div", "kbchat-handoff-email-row");
    var field = el("input");
    field.type = "email";
    field.id = "kbchat-handoff-email";
    field.autocomplete = "email";
    field.maxLength = 254;
    field.required = true;
    field.setAttribute("aria-describedby", "kbchat-handoff-email-error");
    row.appendChild(field);
    var send = el("button", "", TH.send);
    send.type = "submit";
    row.appendChild(send);
    view.appendChild(row);
    var error = el("p", "kbchat-handoff-email-error");
    error.id = "kbchat-handoff-email-error";
    error.setAttribute("role", "alert");
    view.appendChild(error);

    function invalid(text) {
      error.textContent = text;
      if (text === TL.needEmail) { field.setAttribute("aria-invalid", "true"); field.focus(); }
      else field.removeAttribute("aria-invalid");
    }
    view.addEventListener("submit", function (e) {
      e.preventDefault();
      var email = field.value.trim();
      if (send.disabled) return;
      if (!EMAIL.test(email)) return invalid(TL.needEmail);
      invalid("");
      send.disabled = true;
      var session = handoff.session;
      fetch(BASE + "/api/handoff/email", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ session_id: session, email: email }),
      }).then(function (r) {
        if (r.status === 422) return invalid(TL.needEmail);
        if (!r.ok) return errorText(r).then(invalid);
        if (view.parentNode) view.parentNode.removeChild(view);
        handoff.emailDone = true;
        saveHandoff();
        addNotice(TH.emailThanks);
        input.focus();
      }).catch(function () { invalid(T.error); })
        .then(function () { send.disabled = false; });
    });
    messages.appendChild(view);
    scrollToEnd();
    if (isOpen()) field.focus();
  }

  bubble.addEventListener("click", function () { // after open() or close(): seen once opened
    if (isOpen()) bubble.classList.remove("kbchat-unread");
    else if (bubble.classList.contains("kbchat-unread")) {
      bubble.setAttribute("aria-label", T.open + " \u2014 " + TH.unread);
    }
  });

  newBtn.addEventListener("click", function () { // a new conversation: no handoff, nothing seen
    endHandoff(null);
    lastSeenId = 0;
    updateHandoffButton();
  });

  // ---------------------------------------------------------------- start
  function mount() {
    document.body.appendChild(host);
    Promise.resolve(loadHistory()).then(resumeHandoff); // handoff section: a reload polls on
    if (PAGE) {
      root.classList.add("mode-page");
      panel.setAttribute("role", "main");
      open();
    } else {
      loadConfig();
    }
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  window.kbchatWidget = { open: open, close: close, ask: ask };
})();
