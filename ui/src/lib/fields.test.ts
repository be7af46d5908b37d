import { describe, expect, it } from "vitest";
import { ApiError } from "./api/client";
import { errorFor, fieldError, sentence } from "./fields";

describe("fieldError", () => {
  it("puts a 422 next to the field its message starts with", () => {
    const error = new ApiError(422, "invalid", "name: the config already has a user `me`; choose another name");
    expect(fieldError(error, ["name", "credential"])).toEqual({
      field: "name",
      message: "The config already has a user `me`; choose another name",
    });
  });

  it("reads the last part of a config path", () => {
    const error = new ApiError(422, "invalid", "credentials[0].reserve_5h: must be between 1 and 99 (percent kept for the owner)");
    expect(fieldError(error, ["reserve_5h", "reserve_weekly"]).field).toBe("reserve_5h");
    expect(fieldError(new ApiError(422, "invalid", "members[2]: no account `x`"), ["members"]).field).toBe("members");
  });

  it("leaves other errors to the form", () => {
    expect(fieldError(new ApiError(422, "invalid", "give either `credential_path` or `api_key`"), ["tag"]).field).toBeNull();
    expect(fieldError(new ApiError(422, "invalid", "proxy: bad"), ["tag"]).field).toBeNull();
    const conflict = new ApiError(409, "conflict", "name: the config file changed on disk");
    expect(fieldError(conflict, ["name"])).toEqual({ field: null, message: "Name: the config file changed on disk" });
    expect(fieldError(new Error("boom"), ["name"])).toEqual({ field: null, message: "Boom" });
  });

  it("starts a message as a sentence", () => {
    expect(sentence("account `work` is still used by users `me`")).toBe("Account `work` is still used by users `me`");
    expect(fieldError(new ApiError(409, "conflict", "account `work` is still used"), []).message).toBe("Account `work` is still used");
  });

  it("answers per field", () => {
    const error = fieldError(new ApiError(422, "invalid", "tag: taken"), ["tag"]);
    expect(errorFor(error, "tag")).toBe("Taken");
    expect(errorFor(error, null)).toBeNull();
    expect(errorFor(null, "tag")).toBeNull();
  });
});
