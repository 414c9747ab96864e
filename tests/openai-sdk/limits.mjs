// A key's rate limit as the official openai npm package sees it.
// core/orchestrator's TestLimitOpenAISDK runs it against an orchestrator
// where the key API_KEY may make 1 request per minute:
//
//   BASE_URL=... API_KEY=... MODEL=m node limits.mjs
//
// The first request is served; the next ones (plain, streamed, legacy
// completions) are refused with 429, which the SDK raises as RateLimitError
// carrying OpenAI's code and the Retry-After header (maxRetries 0: the SDK
// would otherwise wait and retry it away).
import OpenAI, { RateLimitError } from 'openai';
import { baseURL, apiKey, model, assert, run } from './harness.mjs';

const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'user', content: 'Hello.' }];

async function refused(call) {
  try {
    await call();
  } catch (e) {
    assert(e instanceof RateLimitError, `${e?.constructor?.name}: ${e?.message}`);
    assert(e.status === 429, `status ${e.status}`);
    assert(e.code === 'rate_limit_exceeded', `code ${e.code}`);
    assert(/requests per minute/.test(e.message), `message ${e.message}`);
    const ra = Number(e.headers?.get('retry-after'));
    assert(ra >= 1 && ra <= 60, `retry-after ${e.headers?.get('retry-after')}`);
    return `RateLimitError, retry after ${ra}s`;
  }
  throw new Error('the request was not refused');
}

await run({
  'first request served': async () => {
    const r = await client.chat.completions.create({ model, messages, max_tokens: 2 });
    assert(r.choices.length === 1, `choices ${JSON.stringify(r.choices)}`);
  },
  'second request: RateLimitError': () => refused(() => client.chat.completions.create({ model, messages, max_tokens: 2 })),
  'streamed: RateLimitError': () => refused(async () => {
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 2, stream: true });
    for await (const _ of stream) { /* not reached */ }
  }),
  'completions: RateLimitError': () => refused(() => client.completions.create({ model, prompt: 'Hello', max_tokens: 2 })),
});
