// Real servers for tests. See test/env/README.md.
export { printLogsOnFailure, withLogs, type HasLogs } from "./logs.ts";
export { type PostgresHandle, type PostgresOptions, startPostgres } from "./postgres.ts";
export { createCa, issueCert, type IssuedCert, type TestCa } from "./tls.ts";
export { freePort, makeTempDir, run, runOk, type RunResult } from "./process.ts";
export { luhnValid, seedRows, SEED_CUSTOMERS, SEED_ORDERS } from "./seed.ts";
export { type GitServerHandle, type GitServerOptions, startGitServer } from "./git.ts";
export { DEFAULT_OIDC_USERS, type IdTokenOptions, type OidcHandle, type OidcOptions, startOidc } from "./oidc.ts";
export { ensureSshTestUser, SSH_TEST_USER, type SshdHandle, type SshdOptions, startSshd } from "./sshd.ts";
export { type MinioHandle, type MinioOptions, startMinio } from "./minio.ts";
export { KUBECTL, type KubeHandle, type KubeOptions, type KubeResponse, startKube } from "./kube.ts";
