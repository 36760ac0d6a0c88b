// A real OpenID Connect provider for the tests: the `oidc-provider` package, on loopback.
//
// Usage: node provider.js SETTINGS.json
// SETTINGS.json: {"clients": [oidc-provider client metadata, ...],
//                 "accounts": {"<login>": {"password", "sub", "email", "email_verified",
//                                           "name", "groups": [...]}}}
// It listens on 127.0.0.1 on a free port and prints one line, {"issuer": "http://..."}, when
// ready. The login form is plain HTML, so a browser fills it in as a person would; consent is
// given automatically (a first-party provider), which keeps the tests about devspace.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = settings.accounts;
// The subject is not the login, as at real providers: devspace must key on `sub`.
const bySubject = Object.fromEntries(
  Object.entries(accounts).map(([login, a]) => [a.sub ?? login, { ...a, login }]),
);

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font:16px system-ui;margin:3rem auto;max-width:22rem}label,input,button{display:block;
width:100%;margin:.3rem 0}.error{color:#a11d1d}</style></head><body><h1>Test IdP</h1>${body}</body></html>`;
}

function loginForm(uid, error) {
  return page('Sign in to the test IdP', `
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
  <label for="login">Login</label><input id="login" name="login" autocomplete="username" required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: settings.clients,
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Every client must use PKCE, so a test that passes proves devspace sends it.
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const account = bySubject[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          const { password, login, ...claims } = account;
          return { ...claims, sub: id, preferred_username: login };
        },
      };
    },
    // A first-party provider: consent to whatever the client asked for, without a page.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.params.scope);
      await grant.save();
      return grant;
    },
  });
  const callback = provider.callback();

  async function interaction(req, res) {
    const [, , uid, action] = new URL(req.url, issuer).pathname.split('/');
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return send(res, 400, page('Error', '<p>Unknown interaction.</p>'));
    if (req.method === 'GET') return send(res, 200, loginForm(uid));
    if (req.method === 'POST' && action === 'abort') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'The person cancelled the sign-in.',
      }, { mergeWithLastSubmission: false });
    }
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const account = accounts[form.get('login')];
      if (!account || account.password !== form.get('password')) {
        return send(res, 401, loginForm(uid, 'Wrong login or password.'));
      }
      const accountId = account.sub ?? form.get('login');
      return provider.interactionFinished(
        req, res, { login: { accountId } }, { mergeWithLastSubmission: false },
      );
    }
    return send(res, 405, page('Error', '<p>Method not allowed.</p>'));
  }

  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((err) => {
        console.error(err);
        send(res, 500, page('Error', `<p>${escape(err.message)}</p>`));
      });
    } else {
      callback(req, res);
    }
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  console.log(JSON.stringify({ issuer }));
});
