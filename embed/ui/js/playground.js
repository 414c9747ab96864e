// #/playground: chat with a model through POST /v1/chat/completions
// (stream: true); Stop aborts the request, which cancels the task.

import { get, request, readSSE, APIError } from './api.js';
import { h, setText, failed, setError, textSink } from './dom.js';

// The conversation outlives a visit to another page.
const chat = { messages: [], model: '', maxTokens: 128, temperature: 0.7, ignoreEOS: false };

export function mount(view) {
  const model = h('select', { id: 'pg-model' }, h('option', { value: '' }, 'loading…'));
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: '1', max: '32768', step: '1', value: String(chat.maxTokens) });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', min: '0', max: '2', step: '0.1', value: String(chat.temperature) });
  const ignoreEOS = h('input', { id: 'pg-ignore-eos', type: 'checkbox', checked: chat.ignoreEOS });
  const clear = h('button', { type: 'button', class: 'quiet', id: 'pg-clear' }, 'New chat');
  const output = h('div', { id: 'pg-output', class: 'chat', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const input = h('textarea', { id: 'pg-input', rows: '3', placeholder: 'Say something… (Enter sends, Shift+Enter for a new line)' });
  const sendBtn = h('button', { type: 'submit', id: 'pg-send' }, 'Send');
  const stopBtn = h('button', { type: 'button', id: 'pg-stop', class: 'quiet', disabled: true }, 'Stop');
  const status = h('span', { id: 'pg-status', role: 'status' });

  view.append(
    h('h1', null, 'Playground'),
    h('div', { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'pg-model' }, 'Model'), model),
      h('div', { class: 'field' }, h('label', { for: 'pg-max-tokens' }, 'Max tokens'), maxTokens),
      h('div', { class: 'field' }, h('label', { for: 'pg-temperature' }, 'Temperature'), temperature),
      h('div', { class: 'field check' }, ignoreEOS, h('label', { for: 'pg-ignore-eos', title: 'llama.cpp\'s ignore_eos: generate max tokens, never stop at the end-of-sequence token' }, 'Ignore end of sequence')),
      clear),
    h('section', { class: 'panel' }, output),
    h('form', { class: 'composer', 'aria-label': 'Message', onsubmit: (e) => { e.preventDefault(); sendMsg(); } },
      h('label', { for: 'pg-input', class: 'sr' }, 'Message'), input,
      h('div', { class: 'row' }, sendBtn, stopBtn, status)));

  let ctrl = null;

  const bubble = (role, content) => h('div', { class: `msg ${role}` },
    h('span', { class: 'who' }, role === 'user' ? 'You' : 'Model'), h('div', { class: 'body' }, content));
  for (const m of chat.messages) output.appendChild(bubble(m.role, m.content));

  const setBusy = (busy) => {
    sendBtn.disabled = busy || !model.value;
    stopBtn.disabled = !busy;
  };

  (async () => {
    try {
      const caps = await get('/v2/meta/capabilities');
      const models = (caps.models || []).slice().sort((a, b) => (a.id < b.id ? -1 : 1));
      model.replaceChildren(...(models.length ? models.map((m) => h('option', { value: m.id }, m.state ? `${m.id} (${m.state})` : m.id))
        : [h('option', { value: '' }, 'no models')]));
      if (models.some((m) => m.id === chat.model)) model.value = chat.model;
      chat.model = model.value;
      setError('playground', '');
      setBusy(!!ctrl);
    } catch (e) {
      model.replaceChildren(h('option', { value: '' }, 'cannot list the models'));
      failed('playground', 'Cannot list the models', e);
    }
  })();

  model.addEventListener('change', () => { chat.model = model.value; setBusy(!!ctrl); });
  maxTokens.addEventListener('change', () => { chat.maxTokens = Number(maxTokens.value) || 128; });
  temperature.addEventListener('change', () => { chat.temperature = Number(temperature.value); });
  ignoreEOS.addEventListener('change', () => { chat.ignoreEOS = ignoreEOS.checked; });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); if (!sendBtn.disabled) sendMsg(); }
  });
  stopBtn.addEventListener('click', () => { if (ctrl) ctrl.abort(); });
  clear.addEventListener('click', () => {
    if (ctrl) ctrl.abort();
    chat.messages = [];
    output.replaceChildren();
    setText(status, '');
    input.focus();
  });

  async function sendMsg() {
    const text = input.value.trim();
    if (!text || ctrl || !model.value) return;
    if (!maxTokens.checkValidity() || !temperature.checkValidity()) {
      (maxTokens.checkValidity() ? temperature : maxTokens).reportValidity();
      return;
    }
    input.value = '';
    chat.messages.push({ role: 'user', content: text });
    output.appendChild(bubble('user', text));
    const reply = bubble('assistant', '');
    const body = reply.lastChild;
    output.appendChild(reply);
    reply.scrollIntoView({ block: 'end' });

    const req = {
      model: model.value,
      messages: chat.messages.slice(),
      max_tokens: Number(maxTokens.value),
      temperature: Number(temperature.value),
      stream: true,
    };
    if (ignoreEOS.checked) req.ignore_eos = true;

    const c = new AbortController();
    ctrl = c;
    setBusy(true);
    setText(status, 'streaming');
    let out = '';
    let err = '';
    const sink = textSink(body, () => {
      if (output.scrollHeight - output.scrollTop - output.clientHeight < 120) output.scrollTop = output.scrollHeight;
    });
    try {
      const res = await request('/v1/chat/completions', { method: 'POST', json: req, signal: c.signal, headers: { Accept: 'text/event-stream' } });
      let finished = false;
      await readSSE(res.body, (ev) => {
        if (ev.comment !== undefined || finished) return;
        if (ev.data === '[DONE]') { finished = true; return; }
        let chunk;
        try { chunk = JSON.parse(ev.data); } catch { return; }
        if (chunk.error) { err = chunk.error.message || chunk.error.code || 'error'; return; }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          out += delta;
          sink.add(delta);
        }
      });
      setText(status, err || 'done');
      reply.classList.toggle('failed', !!err);
    } catch (e) {
      if (e.name === 'AbortError') setText(status, 'stopped');
      else {
        setText(status, e instanceof APIError ? `${e.status}: ${e.message}` : `error: ${e.message || e}`);
        reply.classList.add('failed');
      }
    } finally {
      sink.flush();
      if (out) chat.messages.push({ role: 'assistant', content: out });
      else if (!err && status.textContent !== 'stopped') body.textContent = '(empty reply)';
      if (ctrl === c) ctrl = null;
      setBusy(false);
    }
  }

  return () => { if (ctrl) ctrl.abort(); setError('playground', ''); };
}
