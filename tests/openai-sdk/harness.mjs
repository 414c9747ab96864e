// What the black-box checks share: the daemon to talk to, from the
// environment (BASE_URL with or without /v1, API_KEY, MODEL), assert, and a
// runner that prints one line per check and exits non-zero when any fails.
export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`set ${name}`);
    process.exit(2);
  }
  return v;
};

let url = env('BASE_URL').replace(/\/+$/, '');
if (!url.endsWith('/v1')) url += '/v1';
export const baseURL = url;
export const apiKey = env('API_KEY', '');
export const model = env('MODEL');

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// run runs every check of checks ({name: async () => note}) in order.
export async function run(checks) {
  let failed = 0;
  for (const [name, fn] of Object.entries(checks)) {
    try {
      const note = await fn();
      console.log(`ok   ${name}${note ? ` (${note})` : ''}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    }
  }
  const n = Object.keys(checks).length;
  console.log(failed ? `${failed} of ${n} checks failed` : `all ${n} checks passed`);
  process.exit(failed ? 1 : 0);
}
