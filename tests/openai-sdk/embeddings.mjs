// Black-box check of llorch's POST /v1/embeddings with the official openai npm
// package, against an embedding worker (`llorch worker --embedding`) or the
// orchestrator in front of one:
//
//   BASE_URL=http://127.0.0.1:8001 API_KEY=secret MODEL=tiny SIZE=64 node embeddings.mjs
//
// SIZE is the model's embedding size (n_embd). Prints one line per check and
// exits non-zero when any fails.
import OpenAI from 'openai';
import { env, baseURL, apiKey, model, assert, run } from './harness.mjs';

const size = Number(env('SIZE', '64'));

const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 120_000 });

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

function checkList(res, n) {
  assert(res.object === 'list' && res.model === model, `object ${res.object} model ${res.model}`);
  assert(res.data.length === n, `${res.data.length} vectors for ${n} inputs`);
  res.data.forEach((d, i) => {
    assert(d.object === 'embedding' && d.index === i, `data[${i}]: object ${d.object} index ${d.index}`);
    assert(d.embedding.length === size, `data[${i}]: ${d.embedding.length} values, want ${size}`);
    assert(Math.abs(norm(d.embedding) - 1) < 1e-4, `data[${i}]: norm ${norm(d.embedding)}`);
  });
  assert(Number.isInteger(res.usage.prompt_tokens) && res.usage.prompt_tokens >= n, `prompt_tokens ${res.usage.prompt_tokens}`);
  assert(res.usage.total_tokens === res.usage.prompt_tokens, `total_tokens ${res.usage.total_tokens}`);
  return res.data.map((d) => d.embedding);
}

const checks = {
  // The SDK asks for base64 when the caller names no format, and decodes it.
  'two inputs (SDK default: base64)': async () => {
    const [a, b] = checkList(await client.embeddings.create({ model, input: ['the sea is wide', 'a cat on a mat'] }), 2);
    assert(maxDiff(a, b) > 1e-4, 'different inputs gave the same vector');
    return `${a.length} dimensions`;
  },

  'identical inputs, identical vectors': async () => {
    const [a, , c] = checkList(await client.embeddings.create({ model, input: ['same words', 'other words', 'same words'] }), 3);
    assert(maxDiff(a, c) === 0, `identical inputs differ by ${maxDiff(a, c)}`);
  },

  'float equals base64': async () => {
    const input = 'floats and their bytes';
    const [f] = checkList(await client.embeddings.create({ model, input, encoding_format: 'float' }), 1);
    const [d] = checkList(await client.embeddings.create({ model, input }), 1);
    // JSON carries the float32s as their shortest decimals: as float32 again
    // they are the base64 values exactly.
    const f32 = f.map(Math.fround);
    assert(maxDiff(f32, d) === 0, `float and base64 differ by ${maxDiff(f32, d)}`);
  },

  'dimensions: the model size is accepted, another is a 400': async () => {
    checkList(await client.embeddings.create({ model, input: 'x', dimensions: size, user: 'sdk-user' }), 1);
    try {
      await client.embeddings.create({ model, input: 'x', dimensions: size / 2 });
    } catch (e) {
      assert(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}: ${e}`);
      assert(e.param === 'dimensions', `param ${e.param}`);
      return e.message;
    }
    throw new Error('no error');
  },

  'unknown model is a 404': async () => {
    try {
      await client.embeddings.create({ model: 'no-such-model', input: 'x' });
    } catch (e) {
      assert(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e}`);
      return e.message;
    }
    throw new Error('no error');
  },
};

await run(checks);
