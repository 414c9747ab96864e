// Black-box check of the OpenAI features apps use — structured outputs, tool
// calling, logprobs, n, penalties — with the official openai npm package, on
// the random-weight synthetic model: the grammar, not the model, makes the
// output valid. Run like check.mjs:
//
//   BASE_URL=http://127.0.0.1:8001 API_KEY=secret MODEL=tiny node features.mjs
import OpenAI from 'openai';
import { baseURL, apiKey, model, assert, run } from './harness.mjs';
import Ajv from 'ajv';

const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 2, timeout: 120_000 });
const ajv = new Ajv({ strict: false });

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    role: { enum: ['admin', 'user', 'guest'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, minItems: 1, maxItems: 3 },
    active: { type: 'boolean' },
  },
  required: ['name', 'age', 'role', 'tags', 'active'],
  additionalProperties: false,
};

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', maxLength: 16 },
        unit: { enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer', minimum: 1, maximum: 7 },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const clock = {
  type: 'function',
  function: { name: 'get_time', description: 'Current time', parameters: { type: 'object', properties: {}, additionalProperties: false } },
};
const validWeather = ajv.compile(weather.function.parameters);

const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];

function checkCalls(calls, where) {
  assert(Array.isArray(calls) && calls.length >= 1, `${where}: no tool_calls`);
  for (const c of calls) {
    assert(c.type === 'function' && typeof c.id === 'string' && c.id.length > 0, `${where}: call ${JSON.stringify(c)}`);
    assert(c.function.name === 'get_weather', `${where}: function ${c.function.name}`);
    const args = JSON.parse(c.function.arguments);
    assert(validWeather(args), `${where}: arguments ${c.function.arguments}: ${ajv.errorsText(validWeather.errors)}`);
  }
}

const checks = {
  'response_format json_schema': async () => {
    const valid = ajv.compile(person);
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model, seed, max_tokens: 400, temperature: 1,
        messages: [{ role: 'user', content: 'Describe a person.' }],
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
      });
      const text = r.choices[0].message.content;
      assert(r.choices[0].finish_reason === 'stop', `finish_reason ${r.choices[0].finish_reason}: ${text}`);
      const obj = JSON.parse(text);
      assert(valid(obj), `${text}: ${ajv.errorsText(valid.errors)}`);
    }
    return 'three seeds, all valid';
  },

  'response_format json_schema streamed': async () => {
    const valid = ajv.compile(person);
    const stream = await client.chat.completions.create({
      model, seed: 7, max_tokens: 400, stream: true,
      messages: [{ role: 'user', content: 'Describe a person.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    assert(valid(JSON.parse(text)), `${text}: ${ajv.errorsText(valid.errors)}`);
    return `${text.length} chars`;
  },

  'response_format json_object': async () => {
    const r = await client.chat.completions.create({
      model, seed: 4, max_tokens: 300, messages: [{ role: 'user', content: 'JSON please' }],
      response_format: { type: 'json_object' },
      logit_bias: { },
    });
    const text = r.choices[0].message.content;
    if (r.choices[0].finish_reason === 'stop') {
      const obj = JSON.parse(text);
      assert(obj !== null && typeof obj === 'object' && !Array.isArray(obj), `not an object: ${text}`);
      return 'an object';
    }
    assert(text.startsWith('{'), `not an object's start: ${text}`);
    return 'cut at max_tokens, starts as an object';
  },

  'tool_choice required': async () => {
    const r = await client.chat.completions.create({
      model, seed: 5, max_tokens: 300, messages: ask, tools: [weather, clock], tool_choice: 'required',
    });
    const ch = r.choices[0];
    assert(ch.finish_reason === 'tool_calls', `finish_reason ${ch.finish_reason}: ${JSON.stringify(ch.message)}`);
    // Either function may be called; the weather ones must have valid arguments.
    const calls = ch.message.tool_calls;
    assert(calls?.length >= 1, `no calls: ${JSON.stringify(ch.message)}`);
    for (const c of calls) {
      assert(['get_weather', 'get_time'].includes(c.function.name), `function ${c.function.name}`);
      const args = JSON.parse(c.function.arguments);
      if (c.function.name === 'get_weather') assert(validWeather(args), `arguments ${c.function.arguments}`);
    }
    return `${calls.length} call(s)`;
  },

  'tool_choice named function': async () => {
    const r = await client.chat.completions.create({
      model, seed: 6, max_tokens: 300, messages: ask, tools: [weather, clock],
      tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false,
    });
    checkCalls(r.choices[0].message.tool_calls, 'named');
    assert(r.choices[0].message.tool_calls.length === 1, 'parallel_tool_calls false made several calls');
    return r.choices[0].message.tool_calls[0].function.arguments;
  },

  'tool_choice required streamed': async () => {
    const stream = await client.chat.completions.create({
      model, seed: 8, max_tokens: 300, messages: ask, tools: [weather], tool_choice: 'required', stream: true,
    });
    const calls = [];
    let finish;
    let fragments = 0;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      for (const d of ch.delta?.tool_calls ?? []) {
        if (!calls[d.index]) {
          assert(d.id && d.type === 'function' && d.function?.name, `first delta of call ${d.index}: ${JSON.stringify(d)}`);
          calls[d.index] = { id: d.id, type: 'function', function: { name: d.function.name, arguments: '' } };
        } else {
          assert(!d.id && !d.function?.name, `a later delta repeats the id or name: ${JSON.stringify(d)}`);
          if (d.function?.arguments) fragments++;
        }
        calls[d.index].function.arguments += d.function?.arguments ?? '';
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert(finish === 'tool_calls', `finish_reason ${finish}`);
    checkCalls(calls, 'streamed');
    assert(fragments > calls.length, `arguments came in ${fragments} fragments for ${calls.length} call(s): they stream as generated`);
    // The SDK's own accumulator agrees.
    const runner = client.chat.completions.stream({
      model, seed: 8, max_tokens: 300, messages: ask, tools: [weather], tool_choice: 'required',
    });
    const final = await runner.finalChatCompletion();
    checkCalls(final.choices[0].message.tool_calls, 'stream helper');
    assert(final.choices[0].message.tool_calls[0].function.arguments === calls[0].function.arguments, 'same seed, different arguments');
    return `${calls.length} call(s), ${fragments} argument fragments`;
  },

  'role tool follow-up turn': async () => {
    const first = await client.chat.completions.create({
      model, seed: 9, max_tokens: 300, messages: ask, tools: [weather], tool_choice: 'required',
    });
    const msg = first.choices[0].message;
    checkCalls(msg.tool_calls, 'first turn');
    const messages = [...ask, msg, ...msg.tool_calls.map((c) => ({ role: 'tool', tool_call_id: c.id, content: '{"temperature": 21, "sky": "clear"}' }))];
    const r = await client.chat.completions.create({ model, seed: 10, max_tokens: 8, messages, tools: [weather], tool_choice: 'none' });
    const ch = r.choices[0];
    assert(['stop', 'length'].includes(ch.finish_reason), `finish_reason ${ch.finish_reason}`);
    assert(!ch.message.tool_calls?.length, 'tool_choice none made a call');
    const before = await client.chat.completions.create({ model, seed: 10, max_tokens: 1, messages: ask, tools: [weather], tool_choice: 'none' });
    assert(r.usage.prompt_tokens > before.usage.prompt_tokens + 20, `the call and its result are not in the prompt: ${r.usage.prompt_tokens} vs ${before.usage.prompt_tokens}`);
    return `${r.usage.prompt_tokens} prompt tokens`;
  },

  'logprobs with top_logprobs 3': async () => {
    const r = await client.chat.completions.create({
      model, seed: 11, max_tokens: 8, temperature: 0.7, messages: ask, logprobs: true, top_logprobs: 3,
    });
    const content = r.choices[0].logprobs?.content;
    assert(Array.isArray(content) && content.length === r.usage.completion_tokens, `${content?.length} entries for ${r.usage.completion_tokens} tokens`);
    for (const e of content) {
      assert(typeof e.token === 'string' && Array.isArray(e.bytes), `entry ${JSON.stringify(e)}`);
      assert(e.logprob <= 0, `logprob ${e.logprob}`);
      assert(e.top_logprobs.length === 3, `${e.top_logprobs.length} alternatives`);
      for (const a of e.top_logprobs) assert(a.logprob <= 0, `alternative logprob ${a.logprob}`);
      for (let i = 1; i < 3; i++) assert(e.top_logprobs[i - 1].logprob >= e.top_logprobs[i].logprob, 'alternatives not sorted');
      assert(e.top_logprobs.some((a) => a.token === e.token && Math.abs(a.logprob - e.logprob) < 1e-6) ||
        e.logprob <= e.top_logprobs[2].logprob, `chosen ${JSON.stringify(e.token)} not among the top and more likely than the third`);
    }
    // Greedy: the chosen token is the most likely one.
    const g = await client.chat.completions.create({ model, max_tokens: 6, temperature: 0, messages: ask, logprobs: true, top_logprobs: 3 });
    for (const e of g.choices[0].logprobs.content) {
      assert(e.top_logprobs[0].token === e.token && Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6, `greedy chose ${JSON.stringify(e)}`);
    }
    return `${content.length} tokens`;
  },

  'logprobs streamed': async () => {
    const stream = await client.chat.completions.create({
      model, seed: 12, max_tokens: 6, messages: ask, logprobs: true, top_logprobs: 2, stream: true, stream_options: { include_usage: true },
    });
    let n = 0;
    let usage;
    for await (const c of stream) {
      for (const e of c.choices[0]?.logprobs?.content ?? []) {
        assert(e.logprob <= 0 && e.top_logprobs.length === 2, `entry ${JSON.stringify(e)}`);
        n++;
      }
      if (c.usage) usage = c.usage;
    }
    assert(n === usage.completion_tokens, `${n} entries for ${usage.completion_tokens} tokens`);
    return `${n} entries`;
  },

  'completions logprobs': async () => {
    const r = await client.completions.create({ model, prompt: 'The sea', max_tokens: 5, logprobs: 2, seed: 13 });
    const lp = r.choices[0].logprobs;
    assert(lp.tokens.length === r.usage.completion_tokens && lp.token_logprobs.length === lp.tokens.length, `logprobs ${JSON.stringify(lp)}`);
    assert(lp.token_logprobs.every((v) => v <= 0), 'positive logprob');
    assert(lp.top_logprobs.every((m) => Object.keys(m).length >= 1 && Object.keys(m).length <= 2), 'top_logprobs size');
    return `${lp.tokens.length} tokens`;
  },

  'n 2': async () => {
    const r = await client.chat.completions.create({ model, n: 2, seed: 14, max_tokens: 6, temperature: 1, messages: ask });
    assert(r.choices.length === 2 && r.choices[0].index === 0 && r.choices[1].index === 1, `choices ${JSON.stringify(r.choices)}`);
    for (const ch of r.choices) assert(typeof ch.message.content === 'string', 'no content');
    const stream = await client.chat.completions.create({ model, n: 2, seed: 14, max_tokens: 6, temperature: 1, messages: ask, stream: true });
    const texts = ['', ''];
    const finished = [false, false];
    for await (const c of stream) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.delta?.content ?? '';
        if (ch.finish_reason) finished[ch.index] = true;
      }
    }
    assert(finished[0] && finished[1], 'a choice did not finish');
    assert(texts[0] === r.choices[0].message.content && texts[1] === r.choices[1].message.content,
      `stream and non-stream differ with the same seeds: ${JSON.stringify(texts)} vs ${JSON.stringify(r.choices.map((c) => c.message.content))}`);
    return JSON.stringify(texts);
  },

  'penalties change a repetitive output': async () => {
    const base = { model, max_tokens: 24, temperature: 0, messages: [{ role: 'user', content: 'again again again again' }] };
    const plain = await client.chat.completions.create(base);
    const pen = await client.chat.completions.create({ ...base, frequency_penalty: 2, presence_penalty: 2 });
    const a = plain.choices[0].message.content;
    const b = pen.choices[0].message.content;
    assert(a !== b, `same output with and without penalties: ${JSON.stringify(a)}`);
    const distinct = (s) => new Set([...s]).size;
    return `${distinct(a)} distinct chars without, ${distinct(b)} with`;
  },

  'unsupported parameter is a 400 naming it': async () => {
    try {
      await client.chat.completions.create({ model, messages: ask, modalities: ['audio'], audio: { voice: 'alloy', format: 'wav' } });
    } catch (e) {
      assert(e instanceof OpenAI.BadRequestError && (e.param === 'audio' || e.param === 'modalities'), `got ${e?.constructor?.name} param ${e?.param}`);
      return e.message;
    }
    throw new Error('no error');
  },

  'unsupported schema is a 400': async () => {
    try {
      await client.chat.completions.create({
        model, messages: ask,
        response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'string', pattern: '^(a|b)+$', 'x-unknown-keyword': 1 } } },
      });
    } catch (e) {
      assert(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}`);
      return e.message;
    }
    throw new Error('no error');
  },
};

await run(checks);
