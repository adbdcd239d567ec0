export interface KafkaUpResult { brokers: string; pid: number | undefined; started: boolean }
export function up(env?: NodeJS.ProcessEnv): Promise<KafkaUpResult>;
export function down(env?: NodeJS.ProcessEnv): Promise<boolean>;
export function status(env?: NodeJS.ProcessEnv): Promise<{ pid: number | undefined; answers: boolean; brokers: string }>;
