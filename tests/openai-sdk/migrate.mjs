// A streamed chat completion that outlives its worker, with the official
// openai npm package. core/orchestrator's TestMigrationOpenAISDK runs it
// against the orchestrator and kills the worker serving the stream midway; the
// orchestrator moves the task to another worker and the stream just goes on.
//
//   BASE_URL=... API_KEY=... MODEL=tiny MIGRATE_SPEC=spec.json node migrate.mjs
//
// MIGRATE_SPEC is a JSON file: {request, text, completion_tokens,
// prompt_tokens}: the chat request (sent with stream: true), and the content
// and usage of the same request run without interruption.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { baseURL, apiKey, env, assert, run } from './harness.mjs';

const spec = JSON.parse(readFileSync(env('MIGRATE_SPEC'), 'utf8'));
const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 300_000 });

await run({
  'chat stream across a migration': async () => {
    const stream = await client.chat.completions.create({
      ...spec.request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let usage = null;
    const finishes = [];
    for await (const chunk of stream) {
      chunks++;
      assert(chunk.object === 'chat.completion.chunk', `object ${chunk.object}`);
      if (chunk.usage) {
        assert(usage === null, 'a second usage chunk');
        assert(chunk.choices.length === 0, `usage chunk with choices ${JSON.stringify(chunk.choices)}`);
        usage = chunk.usage;
        continue;
      }
      assert(usage === null, 'a chunk after the usage chunk');
      assert(chunk.choices.length === 1 && chunk.choices[0].index === 0, `choices ${JSON.stringify(chunk.choices)}`);
      const c = chunk.choices[0];
      if (typeof c.delta?.content === 'string') text += c.delta.content;
      if (c.finish_reason) finishes.push(c.finish_reason);
    }
    if (text !== spec.text) {
      let i = 0;
      while (i < text.length && text[i] === spec.text[i]) i++;
      throw new Error(`content differs from the uncut run at char ${i} (${text.length} vs ${spec.text.length} chars): ` +
        `${JSON.stringify(text.slice(Math.max(0, i - 20), i + 20))} vs ${JSON.stringify(spec.text.slice(Math.max(0, i - 20), i + 20))}`);
    }
    assert(finishes.length === 1 && finishes[0] === 'length', `finish reasons ${JSON.stringify(finishes)}`);
    assert(usage, 'no usage chunk');
    assert(usage.completion_tokens === spec.completion_tokens,
      `completion_tokens ${usage.completion_tokens}, want ${spec.completion_tokens}`);
    assert(usage.prompt_tokens === spec.prompt_tokens, `prompt_tokens ${usage.prompt_tokens}, want ${spec.prompt_tokens}`);
    assert(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens, `total_tokens ${usage.total_tokens}`);
    return `${chunks} chunks, ${usage.completion_tokens} tokens`;
  },
});
