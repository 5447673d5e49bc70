/**
 * A small Swagger 2.0 schema checker for the contract test: `$ref` (to #/definitions and
 * #/responses), object properties, arrays, primitive types, enums, and the formats int64,
 * date-time and email.
 *
 * Strictness: a key present in a value must be declared by its schema, except the documented
 * extras passed in `extras` (definition name -> keys, e.g. User.username). Swagger declares no
 * required response fields, so absent keys are allowed.
 *
 * `null` is accepted for `$ref` objects and arrays: Go encodes nil pointers and nil slices as
 * null (e.g. Repository.parent, APINotFound.errors), which Swagger 2.0 cannot express.
 */

export type Spec = {
  definitions: Record<string, Schema>;
  responses: Record<string, { description?: string; schema?: Schema; headers?: Record<string, Schema> }>;
  paths: Record<string, Record<string, { responses?: Record<string, { $ref?: string; schema?: Schema }> }>>;
};
export type Schema = {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  items?: Schema;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
};

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export class SwaggerChecker {
  constructor(
    private spec: Spec,
    private extras: Record<string, readonly string[]> = {},
  ) {}

  definition(name: string): Schema {
    const d = this.spec.definitions[name];
    if (!d) throw new Error(`no definition ${name}`);
    return d;
  }

  /** The response schema of an operation, e.g. ("GET", "/repos/{owner}/{repo}/releases", 200). */
  responseSchema(method: string, template: string, status: number): Schema | undefined | null {
    const op = this.spec.paths[template]?.[method.toLowerCase()];
    if (!op) throw new Error(`no operation ${method} ${template}`);
    const r = op.responses?.[String(status)];
    if (!r) return null; // status not documented
    if (r.$ref) {
      const name = r.$ref.replace("#/responses/", "");
      const resp = this.spec.responses[name];
      if (!resp) throw new Error(`no response ${name}`);
      if (resp.schema) return resp.schema;
      // quotaExceeded documents its JSON body fields as "headers"
      if (resp.headers) return { type: "object", properties: resp.headers };
      return undefined; // documented without a body schema
    }
    return r.schema;
  }

  /** Returns a list of problems (empty = valid). */
  check(schema: Schema, value: unknown, at = "$", defName?: string): string[] {
    if (schema.$ref) {
      const name = schema.$ref.replace("#/definitions/", "");
      if (value === null) return [];
      return this.check(this.definition(name), value, at, name);
    }
    const errs: string[] = [];
    if (schema.enum && !schema.enum.includes(value)) errs.push(`${at}: ${JSON.stringify(value)} not in enum ${JSON.stringify(schema.enum)}`);
    switch (schema.type) {
      case "object": {
        if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${at}: expected object, got ${JSON.stringify(value)}`];
        const props = schema.properties ?? {};
        const allowed = new Set([...Object.keys(props), ...(defName ? this.extras[defName] ?? [] : [])]);
        for (const [k, v] of Object.entries(value)) {
          if (props[k]) errs.push(...this.check(props[k], v, `${at}.${k}`));
          else if (typeof schema.additionalProperties === "object") errs.push(...this.check(schema.additionalProperties, v, `${at}.${k}`));
          else if (!allowed.has(k)) errs.push(`${at}.${k}: not declared${defName ? ` in ${defName}` : ""}`);
        }
        return errs;
      }
      case "array":
        if (value === null) return errs;
        if (!Array.isArray(value)) return [`${at}: expected array, got ${JSON.stringify(value)}`];
        value.forEach((v, i) => errs.push(...this.check(schema.items ?? {}, v, `${at}[${i}]`)));
        return errs;
      case "string":
        if (typeof value !== "string") return [`${at}: expected string, got ${JSON.stringify(value)}`];
        if (schema.format === "date-time" && !DATE_TIME.test(value)) errs.push(`${at}: not a date-time: ${value}`);
        if (schema.format === "email" && !value.includes("@")) errs.push(`${at}: not an email: ${value}`);
        return errs;
      case "integer":
        if (typeof value !== "number" || !Number.isInteger(value)) return [`${at}: expected integer, got ${JSON.stringify(value)}`];
        if (schema.format === "int64" && !Number.isSafeInteger(value)) errs.push(`${at}: int64 beyond 2^53: ${value}`);
        if (schema.format === "int32" && (value > 2 ** 31 - 1 || value < -(2 ** 31))) errs.push(`${at}: not an int32: ${value}`);
        return errs;
      case "number":
        return typeof value === "number" ? errs : [`${at}: expected number, got ${JSON.stringify(value)}`];
      case "boolean":
        return typeof value === "boolean" ? errs : [`${at}: expected boolean, got ${JSON.stringify(value)}`];
      case undefined:
        return errs;
      default:
        return [`${at}: unsupported schema type ${schema.type}`];
    }
  }
}
