/** The secured listeners (`up(env, { secure: true })`): addresses, files, client environments. */
export interface KafkaSecureInfo {
  plaintext: string;
  saslSsl: string;
  mtls: string;
  mechanisms: string[];
  caFile: string;
  caKeyFile: string;
  env: Record<'scram' | 'plain' | 'oauthbearer' | 'mtls', Record<string, string>>;
  /** Where the same is written as JSON (<TD_KAFKA_HOME>/secure/client-env.json). */
  file: string;
  /** Shell `export` lines for the SCRAM-SHA-512 client. */
  instructions: string;
}
export interface KafkaUpResult { brokers: string; pid: number | undefined; started: boolean; secure?: KafkaSecureInfo }
export function up(env?: NodeJS.ProcessEnv | Record<string, string | undefined>, options?: { secure?: boolean }): Promise<KafkaUpResult>;
export function down(env?: NodeJS.ProcessEnv | Record<string, string | undefined>): Promise<boolean>;
export function status(env?: NodeJS.ProcessEnv): Promise<{ pid: number | undefined; answers: boolean; brokers: string }>;
