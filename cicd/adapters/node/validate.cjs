#!/usr/bin/env node
// Validates generated adapters with their tool's own JavaScript validator, in one process for all the files:
// `node validate.cjs circleci|codecatalyst FILE...`. Prints one JSON line per file on stdout,
// {"file": FILE, "problems": [one line per problem], "note": "..."}, in the order given.
// Exit 0 all valid, 1 at least one invalid, 2 bad usage.
'use strict';
const fs = require('fs');

const [tool, ...files] = process.argv.slice(2);
if (!tool || !files.length) {
  console.error('usage: node validate.cjs circleci|codecatalyst FILE...');
  process.exit(2);
}

// CircleCI decides conditional steps (`when`/`unless`: a `condition` and `steps`) when it compiles the config; the
// SDK parser has no conditional steps, so their shape is checked here and their steps are inlined for it (every
// branch, so every step is parsed whatever the condition).
function inlineConditionals(steps, where, problems) {
  const out = [];
  for (const step of steps || []) {
    const key = step && typeof step === 'object' ? Object.keys(step)[0] : null;
    if (key === 'when' || key === 'unless') {
      const body = step[key] || {};
      const extra = Object.keys(body).filter((k) => k !== 'condition' && k !== 'steps');
      if (!('condition' in body)) problems.push(`${where}: ${key} step without a condition`);
      if (!Array.isArray(body.steps) || !body.steps.length) problems.push(`${where}: ${key} step without steps`);
      if (extra.length) problems.push(`${where}: ${key} step with unknown keys ${extra.join(', ')}`);
      out.push(...inlineConditionals(body.steps, where, problems));
    } else {
      out.push(step);
    }
  }
  return out;
}

// Each checker takes a file's text and returns {problems, note}; it may throw (an unparsable file).
function circleci() {
  const parser = require('@circleci/circleci-config-parser');
  const yaml = require('yaml');
  return (text) => {
    const raw = yaml.parse(text);
    const shapes = [];
    const resolved = yaml.parse(text);
    for (const kind of ['commands', 'jobs']) {
      for (const [name, body] of Object.entries(resolved[kind] || {})) {
        if (body && Array.isArray(body.steps)) body.steps = inlineConditionals(body.steps, `${kind}.${name}`, shapes);
      }
    }
    if (shapes.length) return { problems: shapes };
    const config = parser.parseConfig(yaml.stringify(resolved));
    const known = new Set(config.jobs.map((job) => job.name));
    const problems = [];
    for (const [name, workflow] of Object.entries(raw.workflows || {})) {
      for (const entry of workflow.jobs || []) {
        const [job, params] = typeof entry === 'string' ? [entry, {}] : Object.entries(entry)[0];
        if ((params || {}).type === 'approval') continue;
        if (!known.has(job)) problems.push(`workflow ${name}: unknown job '${job}'`);
        for (const need of (params || {}).requires || []) {
          const names = (workflow.jobs || []).map((e) => (typeof e === 'string' ? e : Object.values(e)[0].name || Object.keys(e)[0]));
          if (!names.includes(need)) problems.push(`workflow ${name}: job '${job}' requires '${need}', which the workflow does not run`);
        }
      }
    }
    return { problems, note: `${config.jobs.length} jobs, ${config.workflows.length} workflows parsed` };
  };
}

function codecatalyst() {
  const { WorkflowDefinition } = require('@aws/codecatalyst-workflows-sdk');
  const yaml = require('js-yaml');
  return (text) => {
    const result = WorkflowDefinition.validate(yaml.load(text));
    return { problems: result.valid ? [] : result.errors.map((e) => `${e.property}: ${e.message}`), note: 'valid' };
  };
}

const CHECKERS = { circleci, codecatalyst };
const NAMES = { circleci: 'circleci-config-parser', codecatalyst: 'codecatalyst-workflows-sdk' };
if (!(tool in CHECKERS)) {
  console.error(`unknown tool '${tool}'`);
  process.exit(2);
}
const check = CHECKERS[tool]();
let failed = false;
for (const file of files) {
  let result;
  try {
    result = check(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    result = { problems: [`${NAMES[tool]}: ${err && err.message ? err.message : err}`] };
  }
  const problems = result.problems || [];
  failed = failed || problems.length > 0;
  console.log(JSON.stringify({ file, problems, note: problems.length ? '' : `${NAMES[tool]}: ${result.note}` }));
}
process.exit(failed ? 1 : 0);
