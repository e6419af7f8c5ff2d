// A real OpenID Provider for NeoPain's single sign-on tests: panva/oidc-provider (OpenID Certified),
// with a plain login form of its own (no scripts), the test users of users.json and one client.
// Started by tests/sso/provider.py; prints {"issuer": "..."} on its first stdout line once listening.
//
//   OP_PORT                  port on 127.0.0.1 (0: a free one)
//   OP_CLIENT_ID, OP_CLIENT_SECRET
//   OP_REDIRECT_URIS         comma-separated (NeoPain's /oidc/callback/)
//   OP_POST_LOGOUT_REDIRECT_URIS  comma-separated (NeoPain's /login/)
import http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const users = JSON.parse(readFileSync(new URL('./users.json', import.meta.url), 'utf8'));
const list = (name) => (process.env[name] || '').split(',').map((s) => s.trim()).filter(Boolean);
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const configuration = {
  clients: [{
    client_id: process.env.OP_CLIENT_ID || 'neopain',
    client_secret: process.env.OP_CLIENT_SECRET || 'neopain-test-secret',
    client_name: 'NeoPain',
    redirect_uris: list('OP_REDIRECT_URIS'),
    post_logout_redirect_uris: list('OP_POST_LOGOUT_REDIRECT_URIS'),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Every authorization request must carry a PKCE challenge (S256): proves NeoPain sends one.
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'roles', 'neopain_unit'],
  },
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(users, sub) || sub.startsWith('_')) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...users[sub].claims }) };
  },
  // NeoPain is a first-party client: no consent screen (as a hospital configures it).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope);
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><head><title>Sign out of the test provider</title></head><body>
          <h1>Sign out of the test provider?</h1>${form}
          <button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
          <button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
      },
    },
  },
  cookies: { keys: ['neopain-test-provider-only'] },
};

function loginPage(res, uid, { error = '', login = '' } = {}) {
  res.statusCode = error ? 401 : 200;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(`<!DOCTYPE html><html><head><title>Test identity provider</title></head><body>
    <h1>Test identity provider</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}/login">
      <label>User name <input name="login" autocomplete="username" value="${escape(login)}" autofocus required></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
      <button type="submit">Sign in</button>
    </form></body></html>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

let provider;
let providerHandler;

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name !== 'login') {
    // loadExistingGrant grants everything asked: only the login prompt is ever shown.
    throw new Error(`unexpected prompt ${details.prompt.name}`);
  }
  if (req.method === 'GET') return loginPage(res, details.uid);
  const form = await readForm(req);
  const login = form.get('login') || '';
  const user = Object.hasOwn(users, login) && !login.startsWith('_') ? users[login] : undefined;
  if (!user || user.password !== form.get('password')) {
    return loginPage(res, details.uid, { error: 'Wrong user name or password.', login });
  }
  return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  providerHandler(req, res);
});

server.listen(Number(process.env.OP_PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration);
  providerHandler = provider.callback();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
