'use strict';
document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const box = document.getElementById('token');
  CV.setToken(box.value.trim());
  box.value = '';
  try {
    const me = await CV.call('/api/web/me');
    const pages = CV.PAGES[me.role] || [];
    if (!pages.length) { CV.show('msg', CV.el('p', { text: 'Signed in as ' + me.principal + ' (' + me.role + '): no workbench view for this role.' })); return; }
    location.assign('/web/' + pages[0]);
  } catch (e) {
    CV.forget();
    CV.fail('msg', e);
  }
});
