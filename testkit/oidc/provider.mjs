// A real OpenID Connect provider for Ferry's tests (oidc-provider 9.x, node >= 20.19), started
// by testkit/src/oidc.rs. Loopback only, everything in memory, devInteractions login forms.
//
// Environment:
//   OIDC_PORT           port on 127.0.0.1 (issuer http://127.0.0.1:PORT)
//   OIDC_KEYS           file with the private signing keys (a JWKS). When it does not exist, a
//                       new RSA key is made and written there, with its PKCS#1 DER beside it
//                       (OIDC_KEYS + ".der") so tests can sign tokens with the IdP's own key.
//   OIDC_REDIRECT_URIS  the client's redirect URIs, separated by spaces
//   OIDC_RESOURCE       the API (resource indicator = audience) JWT access tokens are for
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
//   OIDC_APPLICATION_TYPE  `web` (redirect URIs match exactly) or `native` (a loopback redirect
//                       URI matches on any port, RFC 8252 §7.3)
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const port = Number(env('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const keysFile = env('OIDC_KEYS');
const redirectUris = env('OIDC_REDIRECT_URIS').split(' ').filter(Boolean);
const resource = env('OIDC_RESOURCE');
const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');

// The only accounts: any other login name is refused.
const USERS = {
  alice: { email: 'alice@example.test', name: 'Alice Example', groups: ['ferry-admins', 'staff'] },
  bob: { email: 'bob@example.test', name: 'Bob Example', groups: ['staff'] },
};

function signingKeys() {
  if (!existsSync(keysFile)) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
    writeFileSync(`${keysFile}.der`, privateKey.export({ type: 'pkcs1', format: 'der' }));
    writeFileSync(keysFile, JSON.stringify({ keys: [jwk] }));
  }
  return JSON.parse(readFileSync(keysFile, 'utf8'));
}

const configuration = {
  clients: [{
    client_id: clientId,
    application_type: process.env.OIDC_APPLICATION_TYPE || 'web',
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: signingKeys(),
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token for the API only when the request names it (`resource=`); Ferry's own login
      // does not, and gets an opaque access token with its ID token.
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'ferry',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  scopes: ['openid', 'email', 'profile', 'offline_access', 'ferry'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    // Groups come with the profile, as many IdPs send them, so Ferry's default scopes get them.
    profile: ['name', 'groups'],
  },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: user.email, email_verified: true, name: user.name, groups: user.groups };
      },
    };
  },
  // The user's email, name and groups in JWT access tokens too (for machine clients).
  async extraTokenClaims(ctx, token) {
    const user = token.accountId && USERS[token.accountId];
    if (token.kind !== 'AccessToken' || !user) return undefined;
    return { email: user.email, name: user.name, groups: user.groups };
  },
  conformIdTokenClaims: false, // the email/profile claims in the ID token, as most IdPs do
  cookies: { keys: ['ferry-test-cookie-key'] },
  ttl: { AccessToken: 600, AuthorizationCode: 60, ClientCredentials: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
};

const provider = new Provider(issuer, configuration);

// devInteractions signs in whatever login name is typed; here only the USERS can sign in, and
// any other name is refused the way a real provider refuses a login: the browser goes back to
// the client with error=access_denied. (Only the login form is taken over; consent is not.)
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch {
    return next(); // no such interaction: devInteractions answers with the error
  }
  if (details.prompt.name !== 'login') return next();
  let body = '';
  for await (const chunk of ctx.req) body += chunk;
  const login = new URLSearchParams(body).get('login');
  const result = Object.hasOwn(USERS, login ?? '')
    ? { login: { accountId: login } }
    : { error: 'access_denied', error_description: 'unknown user' };
  ctx.respond = false;
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening, issuer ${issuer}`));
