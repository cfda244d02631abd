/** A GraphQL response as the tests read it. */
export interface GqlResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  data: any;
  errors: { message: string; extensions?: Record<string, unknown> }[] | undefined;
  extensions: Record<string, unknown> | undefined;
  text: string;
}

/** POSTs one operation to `url` and parses the JSON answer. */
export async function gql(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<GqlResponse> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(variables === undefined ? { query } : { query, variables }),
  });
  const text = await res.text();
  const body = JSON.parse(text) as {
    data?: unknown;
    errors?: GqlResponse["errors"];
    extensions?: Record<string, unknown>;
  };
  return { status: res.status, data: body.data, errors: body.errors, extensions: body.extensions, text };
}
