// Terminal rendering. With xterm.js built in, recorded bytes go to an
// xterm.js Terminal (DOM renderer: every glyph is text in a span; OSC 8
// links are never followed). Without it, a plain-text fallback shows the
// server's screen text. Recorded data is never parsed as HTML either way.
import { el, b64bytes } from './lib.js';

// xterm.js writes its generated theme and size rules into <style>
// elements, which the Content-Security-Policy (no 'unsafe-inline')
// blocks. They hold only xterm's own CSS, never recorded data, so they are
// mirrored into constructed style sheets, which the policy allows.
function mirrorStyles(root) {
  const sheets = new Map();
  const sync = () => {
    for (const s of root.querySelectorAll('style')) {
      let sheet = sheets.get(s);
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheets.set(s, sheet);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
      }
      sheet.replaceSync(s.textContent || '');
    }
  };
  new MutationObserver(sync).observe(root, { subtree: true, childList: true, characterData: true });
  sync();
}

function stripANSI(s) {
  return s.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '').replace(/\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]/g, '').replace(/\r/g, '');
}

export async function createTerminal(container, cols, rows) {
  const host = el('div', { class: 'term', id: 'terminal' });
  container.append(host);
  let xterm = null;
  if (document.body.dataset.xterm === 'yes') {
    try {
      xterm = await import('/ui/static/vendor/xterm.mjs');
    } catch (e) {
      xterm = null;
    }
  }
  if (xterm && xterm.Terminal) {
    const term = new xterm.Terminal({
      cols, rows, disableStdin: true, cursorBlink: false, scrollback: 1000, convertEol: false,
      fontFamily: 'DejaVu Sans Mono, Liberation Mono, monospace', fontSize: 14,
      linkHandler: { activate() {}, allowNonHttpProtocols: false },
      theme: { background: '#111418', foreground: '#d8dee9' },
    });
    mirrorStyles(host);
    term.open(host);
    return {
      kind: 'xterm',
      reset(c, r, snap) { term.reset(); term.resize(c, r); if (snap) term.write(b64bytes(snap)); },
      write(bytes) { term.write(bytes); },
      resize(c, r) { term.resize(c, r); },
      text() {
        const b = term.buffer.active;
        const out = [];
        for (let i = 0; i < term.rows; i++) {
          const line = b.getLine(b.viewportY + i);
          out.push(line ? line.translateToString(true) : '');
        }
        return out.join('\n');
      },
    };
  }
  host.classList.add('fallback');
  const pre = el('pre', { class: 'term-text' });
  host.append(el('p', { class: 'muted' }, 'Terminal renderer not built into this broker: showing plain text.'), pre);
  const dec = new TextDecoder();
  return {
    kind: 'text',
    reset(c, r, snap, text) { pre.textContent = text || ''; },
    write(bytes) {
      pre.textContent = (pre.textContent + stripANSI(dec.decode(bytes, { stream: true }))).slice(-20000);
    },
    resize() {},
    text() { return pre.textContent; },
  };
}
