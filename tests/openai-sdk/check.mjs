// Black-box check of llorch's OpenAI-compatible API with the official openai
// npm package. Point it at any llorch daemon that serves /v1 (a worker or the
// orchestrator):
//
//   BASE_URL=http://127.0.0.1:8001 API_KEY=secret MODEL=tiny node check.mjs
//
// BASE_URL may end in /v1 or not. API_KEY may be empty when the daemon has no
// auth (the wrong-key check is then skipped). Prints one line per check and
// exits non-zero when any fails.
import OpenAI from 'openai';
import { baseURL, apiKey, model, assert, run } from './harness.mjs';

const maxTokens = Number(process.env.MAX_TOKENS ?? 8);

const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 120_000 });

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say something about the sea.' },
];
const finishReasons = new Set(['stop', 'length']);

function checkUsage(u, where) {
  assert(u, `${where}: no usage`);
  assert(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `${where}: prompt_tokens ${u.prompt_tokens}`);
  assert(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 0 && u.completion_tokens <= maxTokens,
    `${where}: completion_tokens ${u.completion_tokens}`);
  assert(u.total_tokens === u.prompt_tokens + u.completion_tokens, `${where}: total_tokens ${u.total_tokens}`);
}

const checks = {
  'models.list': async () => {
    const ids = [];
    for await (const m of client.models.list()) {
      assert(m.object === 'model' && m.owned_by === 'llorch' && Number.isInteger(m.created), `model ${JSON.stringify(m)}`);
      ids.push(m.id);
    }
    assert(ids.includes(model), `${model} not in ${JSON.stringify(ids)}`);
    return `${ids.length} model(s)`;
  },

  'models.retrieve': async () => {
    const m = await client.models.retrieve(model);
    assert(m.id === model, `id ${m.id}`);
    return m.id;
  },

  'chat non-stream': async () => {
    const r = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, seed: 1, temperature: 0.7 });
    assert(r.id.startsWith('chatcmpl-') && r.object === 'chat.completion', `id ${r.id} object ${r.object}`);
    assert(typeof r.system_fingerprint === 'string' && Number.isInteger(r.created), 'system_fingerprint/created');
    const c = r.choices[0];
    assert(r.choices.length === 1 && c.message.role === 'assistant' && typeof c.message.content === 'string', JSON.stringify(c));
    assert(finishReasons.has(c.finish_reason), `finish_reason ${c.finish_reason}`);
    checkUsage(r.usage, 'usage');
    return `${r.usage.completion_tokens} tokens, finish ${c.finish_reason}`;
  },

  'chat stream': async () => {
    const stream = await client.chat.completions.create({
      model, messages, max_completion_tokens: maxTokens, seed: 1, temperature: 0.7, stream: true,
    });
    let n = 0, text = '', finish = null, role = null;
    for await (const chunk of stream) {
      assert(chunk.object === 'chat.completion.chunk', `object ${chunk.object}`);
      assert(chunk.usage === undefined || chunk.usage === null, 'usage without include_usage');
      const c = chunk.choices[0];
      if (n++ === 0) role = c.delta.role;
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    assert(role === 'assistant', `first delta role ${role}`);
    assert(finishReasons.has(finish), `finish_reason ${finish}`);
    // The same request without streaming gives the same text (same seed).
    const whole = await client.chat.completions.create({ model, messages, max_completion_tokens: maxTokens, seed: 1, temperature: 0.7 });
    assert(whole.choices[0].message.content === text, `stream ${JSON.stringify(text)} != ${JSON.stringify(whole.choices[0].message.content)}`);
    return `${n} chunks, finish ${finish}`;
  },

  'chat stream include_usage': async () => {
    const stream = await client.chat.completions.create({
      model, messages, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
    });
    let usage = null, last = null;
    for await (const chunk of stream) {
      last = chunk;
      if (chunk.usage) usage = chunk;
    }
    assert(usage && usage === last && usage.choices.length === 0, `usage chunk ${JSON.stringify(usage)}`);
    checkUsage(usage.usage, 'usage chunk');
    return `usage ${usage.usage.prompt_tokens}+${usage.usage.completion_tokens}`;
  },

  'completions': async () => {
    const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: maxTokens, seed: 2 });
    assert(r.id.startsWith('cmpl-') && r.object === 'text_completion', `id ${r.id} object ${r.object}`);
    assert(typeof r.choices[0].text === 'string' && finishReasons.has(r.choices[0].finish_reason), JSON.stringify(r.choices));
    checkUsage(r.usage, 'usage');
    let text = '';
    for await (const chunk of await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: maxTokens, seed: 2, stream: true })) {
      text += chunk.choices[0]?.text ?? '';
    }
    assert(text === r.choices[0].text, `stream ${JSON.stringify(text)} != ${JSON.stringify(r.choices[0].text)}`);
    return `${r.usage.completion_tokens} tokens`;
  },

  'unknown model is NotFoundError': async () => {
    try {
      await client.chat.completions.create({ model: 'no-such-model-llorch', messages, max_tokens: 1 });
    } catch (e) {
      assert(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e}`);
      assert(e.status === 404 && e.code === 'model_not_found' && e.type === 'invalid_request_error', `status ${e.status} code ${e.code} type ${e.type}`);
      return e.message;
    }
    throw new Error('no error');
  },

  'bad request is BadRequestError': async () => {
    try {
      await client.chat.completions.create({ model, messages, max_tokens: 1, n: 17 });
    } catch (e) {
      assert(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}: ${e}`);
      assert(e.param === 'n', `param ${e.param}`);
      return e.message;
    }
    throw new Error('no error');
  },

  'wrong key is AuthenticationError': async () => {
    if (!apiKey) return 'skipped: no API_KEY';
    const bad = new OpenAI({ baseURL, apiKey: apiKey + '-wrong', maxRetries: 0 });
    try {
      await bad.models.list();
    } catch (e) {
      assert(e instanceof OpenAI.AuthenticationError, `got ${e?.constructor?.name}: ${e}`);
      assert(e.status === 401 && e.type === 'authentication_error', `status ${e.status} type ${e.type}`);
      return e.message;
    }
    throw new Error('no error');
  },
};

await run(checks);
